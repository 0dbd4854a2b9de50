/** A parsed log line. */
export type LogLine = Record<string, unknown> & { event?: string; token?: string; level?: string; msg?: string };

/**
 * The log lines of a tokend under test, and waiting for them: the part the CLI child process
 * (daemon.ts TokendProcess) and the in-process daemon (inprocess.ts) share.
 */
export class LogLines {
  readonly lines: LogLine[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  /**
   * @param defaultTimeoutMs how long waitFor waits unless told.
   * @param ended resolves with a reason once no more lines can come (the process exited); waits then reject.
   */
  constructor(
    private readonly defaultTimeoutMs: number,
    private readonly ended?: Promise<string>,
  ) {}

  /** More context for a failed wait's message (a process's stderr). */
  protected detail(): string {
    return '';
  }

  /** Records a line and wakes the waits it satisfies. */
  protected push(line: LogLine): void {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(line)) {
        w.resolve(line);
        return false;
      }
      return true;
    });
  }

  /** Resolves with the first line (already seen or future) matching pred; rejects after timeoutMs of real time. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = this.defaultTimeoutMs, what = 'log line'): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}${this.detail()}`));
      }, timeoutMs);
      const done = (l: LogLine): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ pred, resolve: done });
      void this.ended?.then((why) => {
        if (this.waiters.some((w) => w.resolve === done)) {
          clearTimeout(timer);
          reject(new Error(`${why} while waiting for ${what}${this.detail()}`));
        }
      });
    });
  }

  /** Waits until at least `nth` (default 1) lines from line `from` on carry this event (and token, if given); resolves with the nth. */
  async waitForEvent(event: string, opts: { token?: string; nth?: number; from?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const nth = opts.nth ?? 1;
    const matching = (): LogLine[] => this.events(event, opts.token, opts.from);
    await this.waitFor(() => matching().length >= nth, opts.timeoutMs, `${event}${opts.token ? ` for ${opts.token}` : ''} #${nth}`);
    return matching()[nth - 1]!;
  }

  /** The lines (from line `from` on) carrying event, and token if given. */
  events(event: string, token?: string, from = 0): LogLine[] {
    return this.lines.slice(from).filter((l) => l.event === event && (!token || l.token === token));
  }
}
