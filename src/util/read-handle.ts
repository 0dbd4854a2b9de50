import type { FileHandle } from 'node:fs/promises';

/**
 * Reads a freshly opened file until EOF or until more than maxBytes have arrived, and returns
 * what was read: at most maxBytes + 1 bytes, so a result longer than maxBytes means "too large"
 * (the file may have grown since the caller's fstat). It reads sequentially, not at offsets, so a
 * pipe or a device (a configuration on /dev/stdin, /dev/zero) is read the same way. The buffer starts at sizeHint + 1
 * bytes (the fstat size) and doubles only while the file keeps growing: a 40-byte secret costs
 * 41 bytes, not maxBytes. (Allocating maxBytes + 1 = 64 KiB up front for each of 10,000 secret
 * reads at start-up held ~650 MiB of dead buffers: bench/scale.mjs, docs/performance.md.)
 * Buffers are zeroed and never from node's shared pool: they may hold a secret.
 */
export async function readUpTo(fh: FileHandle, sizeHint: number, maxBytes: number): Promise<Buffer> {
  const limit = maxBytes + 1;
  let buf = Buffer.alloc(Math.min(Math.max(sizeHint, 0) + 1, limit));
  let length = 0;
  for (;;) {
    if (length === buf.length) {
      if (buf.length >= limit) break;
      const bigger = Buffer.alloc(Math.min(buf.length * 2, limit));
      buf.copy(bigger, 0, 0, length);
      buf = bigger;
    }
    const { bytesRead } = await fh.read(buf, length, buf.length - length, null);
    if (bytesRead === 0) break;
    length += bytesRead;
  }
  return buf.subarray(0, length);
}
