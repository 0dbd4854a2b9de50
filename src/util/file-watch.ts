import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

/** How long changes are gathered before listeners are told (ms): a Secret update is several renames. */
const SETTLE_MS = 100;

interface DirWatch {
  readonly watcher: FSWatcher;
  /** File names in the directory, each with the callbacks interested in it. */
  readonly files: Map<string, Set<() => void>>;
}

/**
 * Tells listeners when files change, with one inotify watch per directory (not per file, and
 * no polling: an idle daemon does no work). Watching the directory also catches how Kubernetes
 * updates a mounted Secret or projected token: it swaps a `..data` symlink, which renames
 * nothing under the file's own name, so any `..data` event counts for every file there.
 */
export class FileWatcher {
  private readonly dirs = new Map<string, DirWatch>();
  private readonly pending = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  /**
   * Calls onChange (settled, at most once per burst) when any of paths changes. Returns the
   * paths that could not be watched (their directory is missing or unreadable): the caller polls
   * those instead.
   */
  watch(paths: readonly string[], onChange: () => void): string[] {
    const failed: string[] = [];
    for (const p of paths) {
      const full = resolve(p);
      const dir = this.dir(dirname(full));
      if (dir === undefined) {
        failed.push(p);
        continue;
      }
      const name = basename(full);
      let set = dir.files.get(name);
      if (set === undefined) dir.files.set(name, (set = new Set()));
      set.add(onChange);
    }
    return failed;
  }

  /** Stops every watch. */
  close(): void {
    for (const d of this.dirs.values()) d.watcher.close();
    this.dirs.clear();
    if (this.timer) clearTimeout(this.timer);
    this.pending.clear();
  }

  private dir(path: string): DirWatch | undefined {
    const known = this.dirs.get(path);
    if (known) return known;
    let watcher: FSWatcher;
    try {
      watcher = watch(path, { persistent: false });
    } catch {
      return undefined;
    }
    const d: DirWatch = { watcher, files: new Map() };
    watcher.on('change', (_type, filename) => this.changed(d, typeof filename === 'string' ? filename : undefined));
    // A removed directory ends its watch; the caller's periodic check still covers its files.
    watcher.on('error', () => {
      watcher.close();
      this.dirs.delete(path);
    });
    this.dirs.set(path, d);
    return d;
  }

  private changed(d: DirWatch, filename: string | undefined): void {
    const all = filename === undefined || filename.startsWith('..');
    for (const [name, callbacks] of d.files) {
      if (all || name === filename) for (const cb of callbacks) this.pending.add(cb);
    }
    if (this.pending.size > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        const callbacks = [...this.pending];
        this.pending.clear();
        for (const cb of callbacks) cb();
      }, SETTLE_MS);
      this.timer.unref();
    }
  }
}
