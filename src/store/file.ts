import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import { parseFileMode } from '../config/fields.js';
import { TokendError } from '../errors.js';
import { KeyQueue } from '../util/key-queue.js';
import { isUsable, withDeadline } from '../token.js';
import { prepareDir } from './dir-safety.js';
import { FileEntries, STATE_DIR_MODE, STATE_FILE_MODE } from './file-entries.js';
import { DirWatcher } from './file-watch.js';
import { LocalLeases } from './lease-local.js';
import { apply, chainKey, writeBackVerdict } from './memory.js';
import { assertTokenName } from './names.js';
import {
  DEFAULT_FILE_MODE,
  type CorruptionReporter,
  type Lease,
  type LeaseOutcome,
  type StoredState,
  type StoreUpdate,
  type TokenStore,
  type WriteBackResult,
} from './store.js';

export { DEFAULT_FILE_MODE, STATE_DIR_MODE, STATE_FILE_MODE };

/** Mode of a token directory tokend has to create. */
export const DIR_MODE = 0o755;

/** Options of FileStore. */
export interface FileStoreOptions {
  /** Directory services read tokens from: `DIR/NAME` (raw token) and `DIR/NAME.json`. */
  readonly dir: string;
  /**
   * Permission bits of `NAME` and `NAME.json`: 0o600 (default) or 0o640 (a shared volume with an
   * fsGroup). The config schema validates it; the store asserts the same rule (parseFileMode).
   */
  readonly mode?: number | undefined;
  /** Where refresh-token state files live (always 0o700 / 0o600). Default `DIR/.state`. */
  readonly stateDir?: string | undefined;
  /** Told about every corrupt entry found by load (which is then treated as absent). */
  readonly onCorrupt?: CorruptionReporter | undefined;
  /** Told when inotify cannot watch a directory and the store polls instead. */
  readonly onWatchFallback?: ((dir: string, reason: string) => void) | undefined;
  /** Clock for `updated_at`, intents and usability. Default systemClock. */
  readonly clock?: Clock | undefined;
  /** Default: a random UUID. */
  readonly holderId?: string | undefined;
}

type Watcher = (state: StoredState) => void;

/**
 * Writes tokens to a directory, like Vault Agent's file sink: `DIR/NAME` holds the raw access
 * token (no trailing newline, so `cat` works), `DIR/NAME.json` its metadata, and
 * `STATEDIR/NAME.state.json` the refresh token, its seed, a revocation tombstone or a grant intent,
 * never group- or world-readable. Every file is replaced atomically (temp file, fchmod, fsync,
 * rename, directory fsync); a commit writes the state file first, then NAME.json, then NAME.
 *
 * The lease is in-process (one tokend writes a directory): holders of one name queue, each lease
 * gets a new fence. Operations on one name are serialized. watch() hears this process's writes at
 * once and other processes' writes (`tokend revoke` beside a running daemon) through inotify.
 * The merge rules are the protocol's own (memory.ts apply / writeBackVerdict).
 */
export class FileStore implements TokenStore {
  readonly description: string;
  readonly holderId: string;
  readonly dir: string;
  readonly stateDir: string;
  readonly mode: number;
  private readonly clock: Clock;
  private readonly onCorrupt: CorruptionReporter;
  private entries: FileEntries;
  private readonly leases: LocalLeases;
  /** Tail of each name's operation queue (settled, never rejecting). */
  private readonly queue = new KeyQueue<string>();
  /** Per watched name, each watcher and a fingerprint of the state it was last told (no repeats). */
  private readonly watchers = new Map<string, Map<Watcher, string | undefined>>();
  private readonly reloading = new Set<string>();
  private readonly reloadAgain = new Set<string>();
  private readonly dirWatcher: DirWatcher;
  private closed = false;

  constructor(opts: FileStoreOptions) {
    const mode = opts.mode ?? DEFAULT_FILE_MODE;
    try {
      parseFileMode(mode);
    } catch (err) {
      throw new TokendError('CONFIG_INVALID', `store.mode: ${Number(mode).toString(8)} ${(err as Error).message}`);
    }
    this.dir = opts.dir;
    this.stateDir = opts.stateDir ?? join(opts.dir, '.state');
    this.mode = mode;
    this.description = `file store ${this.dir}`;
    this.holderId = opts.holderId ?? randomUUID();
    this.clock = opts.clock ?? systemClock;
    this.onCorrupt = opts.onCorrupt ?? (() => undefined);
    this.entries = this.makeEntries(undefined, undefined);
    this.leases = new LocalLeases(this.holderId);
    this.dirWatcher = new DirWatcher(
      [this.dir, this.stateDir],
      (names) => this.onDirChange(names),
      opts.onWatchFallback ?? (() => undefined),
    );
  }

  /**
   * Creates the token directory (0o755) and the state directory (0o700) when missing, refuses
   * unsafe ones (world-writable without the sticky bit, here or above: CONFIG_INVALID), proves both
   * writable and removes temp files a crash left behind (STORE_UNAVAILABLE naming the directory).
   */
  async init(): Promise<void> {
    const dir = await prepareDir(this.dir, DIR_MODE, 'directory');
    const state = await prepareDir(this.stateDir, STATE_DIR_MODE, 'state directory');
    this.entries = this.makeEntries(dir.ownerUid, state.ownerUid);
  }

  /** What is stored for name; the access token only while usable, with this process's deadline. */
  load(name: string): Promise<StoredState> {
    return this.serialized(name, async () => this.view(await this.entries.read(name)));
  }

  /** See TokenStore.withLease: always acquired here, after this process's earlier holders. */
  withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    try {
      this.assertName(name);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.leases.run(name, fn);
  }

  /** Durably (fsync) records the intent in the state file; rejects (disk full...) before any grant. */
  recordIntent(lease: Lease, presentedHash: string): Promise<void> {
    return this.serialized(lease.name, async () => {
      this.leases.assertHolds(lease, this.description);
      const s = await this.entries.read(lease.name);
      const intent = { holder: lease.holder, presented: presentedHash, at: this.clock.now() };
      await this.entries.writeState(lease.name, { ...s, intent });
    });
  }

  /** Removes the holder's intent for presentedHash, if it is still the one stored. */
  clearIntent(lease: Lease, presentedHash: string): Promise<void> {
    return this.serialized(lease.name, async () => {
      this.leases.assertHolds(lease, this.description);
      const s = await this.entries.read(lease.name);
      if (s.intent?.holder !== lease.holder || s.intent.presented !== presentedHash) return;
      await this.entries.writeState(lease.name, { ...s, intent: undefined });
    });
  }

  /** The state file (refresh token, durably) first, then the access files; LEASE_LOST if the lease is gone. */
  commit(lease: Lease, update: StoreUpdate): Promise<void> {
    return this.serialized(lease.name, async () => {
      this.leases.assertHolds(lease, this.description);
      const s = await this.entries.read(lease.name);
      await this.store(lease.name, s, apply(s, update));
    });
  }

  /** See TokenStore.writeBack. */
  writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult> {
    return this.serialized(name, async () => {
      const s = await this.entries.read(name);
      const verdict = writeBackVerdict(s, supersedes, update);
      if (verdict === 'written') await this.store(name, s, apply(s, update));
      return verdict;
    });
  }

  /** Deletes NAME and NAME.json; a refresh-token chain leaves a tombstone in the state file (written first). */
  remove(name: string): Promise<void> {
    return this.serialized(name, async () => {
      const s = await this.entries.read(name);
      const chain = s.refreshToken !== undefined || s.seedHash !== undefined || s.revoked === true;
      const next: StoredState = chain ? { revoked: true, seedHash: s.seedHash } : {};
      await this.entries.writeState(name, next);
      await this.entries.removeAccess(name);
      this.tell(name, this.view(next));
    });
  }

  /** See TokenStore.watch. Other processes' writes arrive through inotify on both directories. */
  watch(name: string, onChange: (state: StoredState) => void): () => void {
    this.assertName(name);
    let set = this.watchers.get(name);
    if (set === undefined) this.watchers.set(name, (set = new Map()));
    // A function watching twice is one watcher; wrap it so each watch() is its own.
    const watcher: Watcher = (state) => onChange(state);
    set.set(watcher, undefined);
    if (!this.closed) this.dirWatcher.start();
    // The first call goes to this watcher alone, with the current state.
    void this.load(name).then(
      (state) => this.tellOne(set, watcher, state),
      () => undefined,
    );
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.watchers.get(name) === set) this.watchers.delete(name);
      if (this.watchers.size === 0) this.dirWatcher.stop();
    };
  }

  /** Stops watching and waits for lease holders and queued operations. */
  async close(): Promise<void> {
    this.closed = true;
    this.dirWatcher.stop();
    this.watchers.clear();
    await this.leases.drain();
    await this.queue.drain();
  }

  private makeEntries(dirOwner: number | undefined, stateOwner: number | undefined): FileEntries {
    return new FileEntries({
      dir: this.dir,
      stateDir: this.stateDir,
      mode: this.mode,
      onCorrupt: this.onCorrupt,
      clock: this.clock,
      dirOwner,
      stateOwner,
    });
  }

  /** Writes next over s: the state file first when the chain part changed, then the access files. */
  private async store(name: string, s: StoredState, next: StoredState): Promise<void> {
    if (chainKey(next) !== chainKey(s)) await this.entries.writeState(name, next);
    if (next.access !== undefined && next.access !== s.access) await this.entries.writeAccess(name, next.access);
    this.tell(name, this.view(next));
  }

  /** s as load returns it: the access token only while usable, with a monotonic deadline (its own, when this process obtained it). */
  private view(s: StoredState): StoredState {
    const access = s.access === undefined || s.access.deadline !== undefined ? s.access : withDeadline(s.access, this.clock);
    return { ...s, access: isUsable(access, this.clock) ? access : undefined };
  }

  private onDirChange(names: readonly string[] | 'all'): void {
    for (const name of names === 'all' ? [...this.watchers.keys()] : names) {
      if (this.watchers.has(name)) this.reload(name);
    }
  }

  /** One reload per name at a time; a change arriving meanwhile triggers one more afterwards. */
  private reload(name: string): void {
    if (this.reloading.has(name)) {
      this.reloadAgain.add(name);
      return;
    }
    this.reloading.add(name);
    void this.load(name)
      .then((state) => this.tell(name, state), () => undefined)
      .finally(() => {
        this.reloading.delete(name);
        if (this.reloadAgain.delete(name) && !this.closed) this.reload(name);
      });
  }

  /** Calls every watcher of name with state, unless it is what that watcher was last told. */
  private tell(name: string, state: StoredState): void {
    const set = this.watchers.get(name);
    if (set === undefined) return;
    for (const watcher of [...set.keys()]) this.tellOne(set, watcher, state);
  }

  private tellOne(set: Map<Watcher, string | undefined>, watcher: Watcher, state: StoredState): void {
    // An intent alone is not announced (as in every store): it changes nothing a watcher serves.
    const key = `${chainKey({ ...state, intent: undefined })}|${state.access?.accessToken ?? ''}|${state.access?.expiresAt ?? ''}`;
    if (this.closed || !set.has(watcher) || set.get(watcher) === key) return;
    set.set(watcher, key);
    queueMicrotask(() => {
      if (set.has(watcher)) watcher(state);
    });
  }

  private assertName(name: string): void {
    assertTokenName(name, this.description);
    // NAME.json is the metadata file of NAME: a token named like that would share it.
    if (name.endsWith('.json')) {
      throw new TokendError('CONFIG_INVALID', `${this.description}: token name ${JSON.stringify(name)} ends in .json, which the file store cannot use`);
    }
  }

  /** Runs op after every earlier operation on name, so writes for one name never interleave. */
  private serialized<T>(name: string, op: () => Promise<T>): Promise<T> {
    try {
      this.assertName(name);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.queue.run(name, op);
  }
}

