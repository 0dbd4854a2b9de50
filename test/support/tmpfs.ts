import { execFile } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A small tmpfs mounted for a test (disk-full cases), or why it could not be (needs root and mount permission). */
export type Tmpfs = { readonly dir: string; unmount(): Promise<void> } | { readonly dir: undefined; readonly why: string };

/** Mounts a tmpfs of size (e.g. '1m') on a fresh temporary directory. */
export async function mountTmpfs(size: string, prefix = 'tokend-tmpfs-'): Promise<Tmpfs> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    return { dir: undefined, why: `cannot mount a tmpfs here (needs root and mount permission): ${(err as Error).message.split('\n')[0]}` };
  }
  return {
    dir,
    async unmount() {
      await run('umount', [dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Appends to path until the filesystem answers ENOSPC. */
export async function fill(path: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const size of [64 * 1024, 4 * 1024, 512, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      for (;;) {
        try {
          await fh.write(chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}
