/**
 * readUpTo: reads a whole small file into a buffer its size (not the limit's), and never more
 * than one byte past the limit.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readUpTo } from '../../src/util/read-handle.js';

const dir = mkdtempSync(join(tmpdir(), 'tokend-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function read(content: string, sizeHint: number | 'actual', maxBytes: number): Promise<Buffer> {
  const file = join(dir, `f${Math.random()}`);
  writeFileSync(file, content);
  const fh = await open(file, 'r');
  try {
    return await readUpTo(fh, sizeHint === 'actual' ? (await fh.stat()).size : sizeHint, maxBytes);
  } finally {
    await fh.close();
  }
}

describe('readUpTo', () => {
  it('reads a 40-byte secret into a buffer of about its size, not of the 64 KiB limit', async () => {
    const bytes = await read('s'.repeat(40), 'actual', 64 * 1024);
    expect(bytes.toString()).toBe('s'.repeat(40));
    expect(bytes.buffer.byteLength).toBeLessThan(1024);
  });

  it('reads an empty file as no bytes', async () => {
    expect((await read('', 'actual', 100)).length).toBe(0);
  });

  it('reads a file exactly at the limit in full', async () => {
    expect((await read('x'.repeat(100), 'actual', 100)).toString()).toBe('x'.repeat(100));
  });

  it('stops one byte past the limit, so the caller can tell "too large"', async () => {
    expect((await read('x'.repeat(5000), 'actual', 100)).length).toBe(101);
  });

  it('reads all of a file that grew after its fstat (size hint too small)', async () => {
    const content = 'abcdefghij'.repeat(30);
    expect((await read(content, 3, 1000)).toString()).toBe(content);
    expect((await read(content, 0, 100)).length).toBe(101);
  });
});
