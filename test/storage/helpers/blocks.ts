/** The block size the snapshot tests write in. */
export const B = 4096;

/** A block whose every byte pair says which block and which generation it is (torn or misplaced blocks show). */
export function block(b: number, gen: number): Buffer {
  const buf = Buffer.alloc(B);
  for (let i = 0; i < B; i += 8) {
    buf.writeUInt32LE(b, i);
    buf.writeUInt32LE(gen, i + 4);
  }
  return buf;
}
