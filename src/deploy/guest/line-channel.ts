import type { Socket } from 'node:net';

/**
 * JSON messages, one per line, over a socket between the controller and a
 * process guest. The controller's end trusts nothing: a line longer than
 * `maxLineBytes`, or one that is not a JSON object, is a violation (the
 * caller kills the guest); buffered bytes never exceed the limit.
 */
export class LineChannel {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxLineBytes: number,
    private readonly onMessage: (m: Record<string, unknown>) => void,
    private readonly onViolation: (why: string) => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => {}); // the peer's exit is reported by its process, not here
  }

  send(m: object): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(`${JSON.stringify(m)}\n`);
  }

  close(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.failed) return;
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.buffered + part.length > this.maxLineBytes) return this.fail(`message longer than ${this.maxLineBytes} bytes`);
      const line = this.buffered === 0 ? part : Buffer.concat([...this.chunks, part]);
      this.chunks = [];
      this.buffered = 0;
      let m: unknown;
      try {
        m = JSON.parse(line.toString('utf8'));
      } catch {
        return this.fail('a message that is not JSON');
      }
      if (typeof m !== 'object' || m === null || Array.isArray(m)) return this.fail('a message that is not an object');
      this.onMessage(m as Record<string, unknown>);
      if (this.failed) return;
    }
    const rest = chunk.subarray(start);
    if (rest.length === 0) return;
    if (this.buffered + rest.length > this.maxLineBytes) return this.fail(`message longer than ${this.maxLineBytes} bytes`);
    this.chunks.push(rest);
    this.buffered += rest.length;
  }

  private fail(why: string): void {
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
    this.onViolation(why);
  }
}
