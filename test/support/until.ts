/**
 * Polls fn (every everyMs) until it returns a truthy value, which it resolves to; rejects after
 * timeoutMs naming what was awaited. For conditions with no event to await: files on disk, a TTL
 * lapsing, a key reappearing.
 */
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
