import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileWatcher } from '../../src/util/file-watch.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-watch-'));
  const w = new FileWatcher();
  cleanups.push(() => {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, w };
}

/** Resolves with the names of the callbacks called in the next settled burst. */
function nextBurst(calls: string[]): Promise<string[]> {
  const start = calls.length;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (calls.length > start) {
        clearInterval(timer);
        // Let the rest of the burst (same settle window) land.
        setTimeout(() => resolve(calls.slice(start)), 20);
      }
    }, 5);
  });
}

describe('FileWatcher', () => {
  it('tells the listener of a file replaced in place, and only that file\'s listener', async () => {
    const { dir, w } = setup();
    const seed = join(dir, 'seed');
    const secret = join(dir, 'secret');
    writeFileSync(seed, 'a');
    writeFileSync(secret, 'a');
    const calls: string[] = [];
    expect(w.watch([seed], () => calls.push('seed'))).toEqual([]);
    expect(w.watch([secret], () => calls.push('secret'))).toEqual([]);
    const burst = nextBurst(calls);
    writeFileSync(join(dir, '.tmp'), 'b');
    renameSync(join(dir, '.tmp'), seed);
    expect(await burst).toEqual(['seed']);
  });

  it('treats a Kubernetes ..data symlink swap as a change of every file in the directory, once per burst', async () => {
    const { dir, w } = setup();
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'token'), 'one');
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'token'), join(dir, 'token'));
    const calls: string[] = [];
    w.watch([join(dir, 'token')], () => calls.push('token'));
    const burst = nextBurst(calls);
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'token'), 'two');
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    expect(await burst).toEqual(['token']);
  });

  it('returns the paths it cannot watch (missing directory) so the caller polls them', () => {
    const { dir, w } = setup();
    expect(w.watch([join(dir, 'missing', 'seed')], () => undefined)).toEqual([join(dir, 'missing', 'seed')]);
  });
});
