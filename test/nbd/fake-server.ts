import { createServer, type Socket } from 'node:net';
import { ByteQueue } from '../../src/nbd/byte-queue.ts';

type T = { after: (fn: () => unknown) => void };

export interface FakeServerScript {
  /** Answer NBD_OPT_GO with NBD_REP_ERR_UNSUP, as servers that predate GO do. */
  refuseGo?: boolean;
  size?: number;
  flags?: number;
  /** Called for each 28-byte request header in transmission; write whatever reply is under test. */
  onRequest: (header: Buffer, socket: Socket) => void;
}

/**
 * A scripted NBD server for testing the client against misbehaviour: just
 * enough fixed newstyle negotiation to reach transmission, then the script.
 */
export async function fakeServer(t: T, script: FakeServerScript): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const queue = new ByteQueue();
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    let option: { code: number; length: number } | null = null; // header read, data pending
    const greeting = Buffer.alloc(18);
    greeting.write('NBDMAGICIHAVEOPT', 0, 'latin1');
    greeting.writeUInt16BE(1, 16); // FIXED_NEWSTYLE only: the client must expect the zero padding
    socket.write(greeting);
    const export_ = () => {
      const b = Buffer.alloc(10);
      b.writeBigUInt64BE(BigInt(script.size ?? 1 << 20), 0);
      b.writeUInt16BE(script.flags ?? 0b1101, 8); // HAS_FLAGS | SEND_FLUSH | SEND_FUA
      return b;
    };
    const reply = (option: number, type: number, data = Buffer.alloc(0)) => {
      const h = Buffer.alloc(20);
      h.writeBigUInt64BE(0x3e889045565a9n, 0);
      h.writeUInt32BE(option, 8);
      h.writeUInt32BE(type, 12);
      h.writeUInt32BE(data.length, 16);
      socket.write(Buffer.concat([h, data]));
    };
    socket.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      for (;;) {
        if (phase === 'flags') {
          if (queue.length < 4) return;
          queue.take(4);
          phase = 'options';
        } else if (phase === 'options' && option === null) {
          if (queue.length < 16) return;
          const h = queue.take(16);
          option = { code: h.readUInt32BE(8), length: h.readUInt32BE(12) };
        } else if (phase === 'options' && option !== null) {
          if (queue.length < option.length) return;
          queue.skip(option.length);
          const code = option.code;
          option = null;
          if (code === 7 && script.refuseGo) reply(code, 0x80000001);
          else if (code === 7) {
            reply(code, 3, Buffer.concat([Buffer.alloc(2), export_()]));
            reply(code, 1);
            phase = 'transmission';
          } else if (code === 1) {
            socket.write(Buffer.concat([export_(), Buffer.alloc(124)]));
            phase = 'transmission';
          }
        } else {
          if (queue.length < 28) return;
          script.onRequest(Buffer.from(queue.take(28)), socket);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as { port: number }).port;
}

/** A simple reply header echoing the request's cookie. */
export function simpleReplyTo(header: Buffer, error = 0, magic = 0x67446698): Buffer {
  const r = Buffer.alloc(16);
  r.writeUInt32BE(magic, 0);
  r.writeUInt32BE(error, 4);
  header.copy(r, 8, 8, 16);
  return r;
}
