import { Writable } from 'node:stream';
import { loadConfigFile } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.js';
import type { LogLine } from './daemon.js';

/**
 * tokend started in this process (startDaemon) from a config file, with an injected clock and
 * randomness, its log lines parsed as they are written (pino `sink()` style). For daemon
 * behaviour that would otherwise wait on real token lifetimes; the process boundary (signals,
 * exit codes) stays with the CLI tests.
 */
export class InProcessTokend {
  readonly lines: LogLine[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  daemon!: Daemon;

  static async start(configPath: string, opts: Omit<DaemonOptions, 'logger' | 'logDestination'> = {}): Promise<InProcessTokend> {
    const t = new InProcessTokend();
    const config = await loadConfigFile(configPath, { env: process.env });
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const text of chunk.toString().split('\n')) if (text) t.push(JSON.parse(text) as LogLine);
        cb();
      },
    });
    t.daemon = await startDaemon(config, { ...opts, logger: createLogger('debug', sink as never) });
    return t;
  }

  get url(): string {
    return this.daemon.url;
  }

  /** Resolves with the first line (already seen or future) matching pred; rejects after timeoutMs of real time. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 10_000, what = 'log line'): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      const done = (l: LogLine): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  /** Waits for the nth line (counting from line `from`) carrying event for token. */
  async waitForEvent(event: string, opts: { token?: string; nth?: number; from?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const nth = opts.nth ?? 1;
    const from = opts.from ?? 0;
    const matching = (): LogLine[] => this.lines.slice(from).filter((l) => l.event === event && (!opts.token || l.token === opts.token));
    await this.waitFor(() => matching().length >= nth, opts.timeoutMs, `${event} #${nth}`);
    return matching()[nth - 1]!;
  }

  stop(): Promise<void> {
    return this.daemon.stop();
  }

  private push(line: LogLine): void {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(line)) {
        w.resolve(line);
        return false;
      }
      return true;
    });
  }
}
