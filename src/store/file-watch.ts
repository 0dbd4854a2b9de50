import { watch, type FSWatcher } from 'node:fs';
import { TOKEN_NAME_RE } from '../token.js';

/** Default interval of the polling fallback when inotify cannot be used (ms). */
export const POLL_FALLBACK_MS = 5_000;

/**
 * Tells the file store which token names another process may have written, from inotify events on
 * the token and state directories (fs.watch: nothing runs while nothing changes). A file name maps
 * to the token names it can belong to: `NAME`, `NAME.json` (also the raw file of a token called
 * `NAME.json`) and `NAME.state.json`; temp files (hidden) are skipped: their rename into place is
 * the event that counts. Where fs.watch cannot be used (inotify limits, some network filesystems)
 * every watched name is reloaded every pollMs instead, and onFallback says so.
 */
export class DirWatcher {
  private readonly watchers: FSWatcher[] = [];
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly dirs: readonly string[],
    private readonly onNames: (names: readonly string[] | 'all') => void,
    private readonly onFallback: (dir: string, reason: string) => void,
    private readonly pollMs = POLL_FALLBACK_MS,
  ) {}

  /** Starts watching (idempotent). */
  start(): void {
    if (this.watchers.length > 0 || this.poll !== undefined) return;
    for (const dir of new Set(this.dirs)) {
      try {
        const w = watch(dir, { persistent: false }, (_event, file) => {
          if (typeof file === 'string') this.onFile(file);
          else this.onNames('all'); // the kernel dropped the name (queue overflow): reload everything
        });
        w.on('error', (err) => this.fallBack(dir, err));
        this.watchers.push(w);
      } catch (err) {
        this.fallBack(dir, err);
        return;
      }
    }
  }

  /** Stops watching and polling. */
  stop(): void {
    for (const w of this.watchers.splice(0)) w.close();
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  private onFile(file: string): void {
    if (file.startsWith('.')) return;
    const names: string[] = [];
    if (TOKEN_NAME_RE.test(file)) names.push(file);
    for (const suffix of ['.state.json', '.json']) {
      if (file.endsWith(suffix)) {
        const base = file.slice(0, -suffix.length);
        if (TOKEN_NAME_RE.test(base)) names.push(base);
      }
    }
    if (names.length > 0) this.onNames(names);
  }

  private fallBack(dir: string, err: unknown): void {
    this.stop();
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    this.onFallback(dir, typeof code === 'string' ? code : 'error');
    this.poll = setInterval(() => this.onNames('all'), this.pollMs);
    this.poll.unref();
  }
}
