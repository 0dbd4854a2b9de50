/**
 * Settles like p, unless signal aborts first: then rejects with signal.reason at once (p keeps
 * running; its result is ignored). Without a signal it is p itself.
 */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      p.catch(() => undefined); // left to settle unobserved
      return reject(signal.reason);
    }
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * One signal that aborts when any of the given ones does (undefined entries are skipped), with the
 * first reason. Unlike AbortSignal.any it holds no lasting reference once disposed: on Node 20
 * every AbortSignal.any call leaves a WeakRef behind, one per grant for the life of the process.
 * Call dispose() when the operation is over.
 */
export function linkSignals(...signals: ReadonlyArray<AbortSignal | undefined>): { signal: AbortSignal; dispose: () => void } {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  if (present.length === 1) return { signal: present[0] as AbortSignal, dispose: () => undefined };
  const controller = new AbortController();
  const listeners: Array<[AbortSignal, () => void]> = [];
  const dispose = (): void => {
    for (const [s, l] of listeners) s.removeEventListener('abort', l);
    listeners.length = 0;
  };
  for (const s of present) {
    if (s.aborted) {
      controller.abort(s.reason);
      dispose();
      break;
    }
    const l = (): void => {
      controller.abort(s.reason);
      dispose();
    };
    s.addEventListener('abort', l, { once: true });
    listeners.push([s, l]);
  }
  return { signal: controller.signal, dispose };
}
