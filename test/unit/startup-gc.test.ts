import { afterEach, describe, expect, it, vi } from 'vitest';
import { collectStartupGarbage } from '../../src/util/startup-gc.js';

describe('collectStartupGarbage', () => {
  const g = globalThis as { gc?: unknown };
  const saved = g.gc;
  afterEach(() => {
    if (saved === undefined) delete g.gc;
    else g.gc = saved;
  });

  it('runs one synchronous, memory-reducing full collection where node exposes gc', () => {
    const gc = vi.fn();
    g.gc = gc;
    expect(collectStartupGarbage()).toBe(true);
    expect(gc.mock.calls).toEqual([[{ type: 'major', execution: 'sync', flavor: 'last-resort' }]]);
  });

  it('does nothing without --expose-gc', () => {
    delete g.gc;
    expect(collectStartupGarbage()).toBe(false);
  });
});
