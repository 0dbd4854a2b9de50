/**
 * One full, memory-reducing garbage collection, for when start-up is over (every token's first
 * grant done): what start-up allocated (the configuration's syntax tree and schema, discovery,
 * the first grants) is garbage by then, and this gives its pages back at once, so the daemon is
 * at its steady size when it first reports ready instead of some ten seconds later, when V8's
 * memory reducer would get to it (one token on Node 24: about -2 MiB at ready,
 * docs/performance.md). At 10,000 tokens (a ~90 MiB heap) it pauses the process once, for
 * ~0.2 s. Only where node runs with --expose-gc (the image's ENTRYPOINT does); elsewhere it does
 * nothing and returns false.
 */
export function collectStartupGarbage(): boolean {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return false;
  // 'last-resort': V8's collection for memory pressure (several passes, then free pages are
  // released). A V8 that does not know the options runs an ordinary full collection.
  (gc as (options: object) => void)({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}
