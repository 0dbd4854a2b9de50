import { randomUUID } from 'node:crypto';
import type { ClusterOptions, RedisOptions, Result } from 'ioredis';
import { systemClock, type Clock } from '../../clock.js';
import { TokendError } from '../../errors.js';
import { EVENTS, type Logger } from '../../log.js';
import { isUsable, MAX_TOKEN_CHARS, remainingMs, withDeadline, type AccessToken } from '../../token.js';
import { decodeMetaMs, decodeStateDoc, encodeMetaMs, encodeStateDoc, MAX_ENTRY_BYTES } from '../codec.js';
import { decryptRefreshToken, encryptRefreshToken, isEncrypted, KEY_BYTES } from '../crypto.js';
import { apply, chainKey, writeBackVerdict } from '../memory.js';
import { assertTokenName } from '../names.js';
import type { CorruptionReporter, Lease, LeaseOutcome, StoredState, StoreUpdate, TokenStore, WriteBackResult } from '../store.js';
import { messageOf, RedisConnection } from './connection.js';
import { HOLDER_ID_RE, RedisLeases } from './lease.js';
import { ACQUIRE, encodeWrite, READ, RELEASE, RENEW, WRITE, type WriteOp } from './scripts.js';
import { announcement, RedisWatch } from './watch.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    tokendRead(access: string, meta: string, state: string, maxBytes: number): Result<Array<string | number | null>, Context>;
    tokendWrite(access: string, meta: string, state: string, lease: string, fence: string, op: string): Result<string, Context>;
  }
}

/** Options of RedisStore. Durations in milliseconds. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port/db` or `rediss://...`; default `redis://127.0.0.1:6379/0`. With sentinels or cluster only its credentials, db and scheme count. */
  readonly url?: string | undefined;
  /** Key prefix, e.g. `tokend:`. In cluster mode it must contain a hash tag such as `{tokend}:`. */
  readonly prefix: string;
  /** Overrides a password in the URL. */
  readonly password?: string | undefined;
  /** 32-byte AES-256-GCM key: refresh tokens are then stored encrypted (`enc:v1:...`). */
  readonly encryptionKey?: Buffer | undefined;
  readonly sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined;
  readonly sentinelName?: string | undefined;
  readonly cluster?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** How long a refresh lease lasts without renewal; renewed every leaseMs/3. At least 300. */
  readonly leaseMs: number;
  /** This replica's id in lease values and CLIENT LIST ([A-Za-z0-9_.-], up to 64). Default: a random UUID. */
  readonly holderId?: string | undefined;
  readonly logger: Logger;
  /** Called for a stored value that cannot be used (it is then treated as absent). */
  readonly onCorrupt?: CorruptionReporter | undefined;
  /** Passed to ioredis last, so it overrides tokend's defaults (for cluster: the node options). */
  readonly redisOptions?: RedisOptions | undefined;
  readonly clusterOptions?: ClusterOptions | undefined;
  /** Longest a single command may take before it fails with STORE_UNAVAILABLE. Default 1000. */
  readonly commandTimeoutMs?: number | undefined;
  /** How long init() waits for Redis to become reachable. Default 5000. */
  readonly initTimeoutMs?: number | undefined;
  readonly clock?: Clock | undefined;
  /** Jitter source for reconnect delays. Default Math.random. */
  readonly random?: (() => number) | undefined;
}

/** Bound on compare-and-set retries: only writers racing each other can cause one. */
const MAX_CAS_ATTEMPTS = 8;
// READ's markers for values that are not readable strings.
const TOO_LARGE = -1;
const WRONG_TYPE = -2;

interface Keys {
  readonly access: string;
  readonly meta: string;
  readonly state: string;
  readonly lease: string;
  readonly fence: string;
}

/** A READ reply value: a string, undefined when absent, or a marker number. */
type Raw = string | number | undefined;

interface Snapshot {
  readonly rawMeta: Raw;
  readonly rawState: Raw;
  /** Everything stored, decoded; the access token unjudged (expired ones included). */
  readonly state: StoredState;
}

/**
 * The Redis store: the store protocol over the connection, lease and watch roles. Keys for NAME:
 * `PREFIX+NAME` (raw access token) and `:meta` (its metadata, with ms fields), both with PX = the
 * token's remaining validity; `:state` (refresh token, seed, tombstone, grant intent; no TTL);
 * `:lease` and `:fence` (lease.ts). Every change is one WRITE script: a compare-and-set against
 * the values read just before (decided client-side with the protocol's own apply and
 * writeBackVerdict), fenced by the lease for commits and intents, announced on `PREFIX+events`.
 */
export class RedisStore implements TokenStore {
  readonly description: string;
  readonly holderId: string;
  private readonly prefix: string;
  private readonly channel: string;
  private readonly key: Buffer | undefined;
  private readonly logger: Logger;
  private readonly onCorrupt: CorruptionReporter;
  private readonly clock: Clock;
  private readonly conn: RedisConnection;
  private readonly leases: RedisLeases;
  private readonly watcher: RedisWatch;
  private closing: Promise<void> | undefined;

  constructor(opts: RedisStoreOptions) {
    if (!Number.isFinite(opts.leaseMs) || opts.leaseMs < 300) throw new TokendError('CONFIG_INVALID', 'store.leaseMs must be at least 300 ms');
    if (opts.encryptionKey !== undefined && opts.encryptionKey.length !== KEY_BYTES) {
      throw new TokendError('CONFIG_INVALID', `store.encryptionKeyFile: the key must be ${KEY_BYTES} bytes`);
    }
    // One token's keys are used together in one Lua script, so in a cluster they must share a slot.
    if (opts.cluster && !/\{[^}]+\}/.test(opts.prefix)) {
      throw new TokendError('CONFIG_INVALID', 'store.prefix must contain a hash tag such as "{tokend}:" in cluster mode');
    }
    if (opts.sentinels && !opts.sentinelName) throw new TokendError('CONFIG_INVALID', 'store.sentinelName is required with store.sentinels');
    this.holderId = opts.holderId ?? randomUUID();
    if (!HOLDER_ID_RE.test(this.holderId)) throw new TokendError('CONFIG_INVALID', `holder id must match ${HOLDER_ID_RE.source}`);
    this.prefix = opts.prefix;
    this.channel = `${opts.prefix}events`;
    this.key = opts.encryptionKey;
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.onCorrupt =
      opts.onCorrupt ??
      ((token, what, reason) => this.logger.error({ event: EVENTS.storeCorrupt, token, what, reason }, 'stored entry is corrupt; it will be replaced'));
    this.conn = new RedisConnection({
      ...opts,
      clientName: `tokend-${this.holderId}`,
      scripts: { tokendAcquire: ACQUIRE, tokendRenew: RENEW, tokendRelease: RELEASE, tokendRead: READ, tokendWrite: WRITE },
    });
    this.description = this.conn.where;
    this.leases = new RedisLeases({
      conn: this.conn,
      holderId: this.holderId,
      leaseMs: opts.leaseMs,
      clock: this.clock,
      logger: this.logger,
      onFenceRepaired: (token, key) =>
        this.logger.error(
          { event: EVENTS.storeCorrupt, token, what: key, reason: 'not an integer counter' },
          'the lease fence key was corrupt; restarted it from the current time in ms',
        ),
    });
    this.watcher = new RedisWatch(this.conn, this.channel, (name) => this.load(name), this.logger);
  }

  /**
   * Connects, PINGs and runs the read script once on a probe key, so that refused credentials or a
   * user without the permissions tokend needs (STORE_AUTH_FAILED) show at start-up, not at the
   * first refresh. STORE_UNAVAILABLE names where Redis is (never the password).
   */
  async init(): Promise<void> {
    await this.conn.init();
    const probe = `${this.prefix}tokend-init-probe`;
    await this.conn.run('init', 'tokend-init-probe', () => this.conn.client.tokendRead(probe, `${probe}:meta`, `${probe}:state`, 1));
  }

  /** True while the main connection is ready (ioredis status 'ready'). */
  isAvailable(): boolean {
    return this.conn.isReady();
  }

  /** See TokenStore.load: one atomic read of the three values; the access token only while usable. */
  async load(name: string): Promise<StoredState> {
    const { state } = await this.read(name, this.keys(name));
    const access = state.access === undefined ? undefined : withDeadline(state.access, this.clock);
    return { ...state, access: isUsable(access, this.clock) ? access : undefined };
  }

  /** See TokenStore.withLease and lease.ts. */
  async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    const keys = this.keys(name);
    return this.leases.withLease(name, keys, fn);
  }

  /** Stores the intent in `:state` (atomically with the refresh token), fenced; resolves once Redis acknowledged it. */
  async recordIntent(lease: Lease, presentedHash: string): Promise<void> {
    const intent = { holder: lease.holder, presented: presentedHash, at: this.clock.now() };
    await this.mutate(lease.name, lease, 'intent', (s) => ({ ...s, intent }), false);
  }

  /** Removes the holder's intent for presentedHash, fenced. */
  async clearIntent(lease: Lease, presentedHash: string): Promise<void> {
    await this.mutate(lease.name, lease, 'intent', (s) =>
      s.intent?.holder === lease.holder && s.intent.presented === presentedHash ? { ...s, intent: undefined } : s,
    false);
  }

  /**
   * Stores update if lease is still current (one script checks lease value and fence, then writes
   * state and access token). LEASE_LOST: nothing written. STORE_UNAVAILABLE: the outcome is unknown
   * (the script may have run); writeBack completes it.
   */
  async commit(lease: Lease, update: StoreUpdate): Promise<void> {
    await this.mutate(lease.name, lease, 'commit', (s) => apply(s, update), true);
  }

  /** See TokenStore.writeBack: the verdict on the state read just before, then a compare-and-set on it. */
  async writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult> {
    let verdict: WriteBackResult = 'already';
    await this.mutate(name, undefined, 'write-back', (s) => {
      verdict = writeBackVerdict(s, supersedes, update);
      return verdict === 'written' ? apply(s, update) : undefined;
    }, true);
    return verdict;
  }

  /** Deletes the access token and metadata; a refresh-token chain leaves a tombstone in `:state`. */
  async remove(name: string): Promise<void> {
    await this.mutate(name, undefined, 'remove', (s) => {
      const chain = s.refreshToken !== undefined || s.seedHash !== undefined || s.revoked === true;
      return chain ? { revoked: true, seedHash: s.seedHash } : {};
    }, true, true);
  }

  /** See TokenStore.watch and watch.ts. */
  watch(name: string, onChange: (state: StoredState) => void): () => void {
    this.keys(name);
    return this.watcher.watch(name, onChange);
  }

  /** Aborts and releases held leases, stops watching, closes both connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.leases.releaseAll();
      await this.watcher.close();
      await this.conn.close();
    })();
    return this.closing;
  }

  private keys(name: string): Keys {
    assertTokenName(name, this.description);
    const base = this.prefix + name;
    return { access: base, meta: `${base}:meta`, state: `${base}:state`, lease: `${base}:lease`, fence: `${base}:fence` };
  }

  /**
   * The one write path: read, decide (decide returns the next state, or undefined for no write),
   * compare-and-set; read again when another writer raced us. A fenced write is sent even when it
   * changes nothing, so a lost lease is always reported.
   */
  private async mutate(
    name: string,
    lease: Lease | undefined,
    what: string,
    decide: (s: StoredState) => StoredState | undefined,
    announce: boolean,
    dropAccess = false,
  ): Promise<void> {
    const keys = this.keys(name);
    const leaseValue = lease === undefined ? undefined : this.leases.valueOf(lease);
    if (lease !== undefined && (leaseValue === undefined || lease.holder !== this.holderId)) {
      throw new TokendError('LEASE_LOST', `${what} of token "${name}": the lease is no longer held; nothing was written`);
    }
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const snap = await this.read(name, keys);
      const next = decide(snap.state);
      if (next === undefined) return;
      const op = this.plan(name, snap, next, dropAccess);
      if (op.state === undefined && op.access === undefined && lease === undefined) return;
      const changed = op.state !== undefined || op.access !== undefined;
      const full: WriteOp = {
        ...op,
        lease: lease && leaseValue ? { value: leaseValue, fence: lease.fence } : undefined,
        announce: announce && changed ? { channel: this.channel, message: announcement(name) } : undefined,
      };
      const reply = await this.conn.run(what, name, () =>
        this.conn.client.tokendWrite(keys.access, keys.meta, keys.state, keys.lease, keys.fence, encodeWrite(full)),
      );
      if (reply === 'OK') return;
      if (reply === 'LOST' && lease !== undefined) {
        this.leases.lose(lease, `the fenced ${what} found another holder`);
        throw new TokendError('LEASE_LOST', `${what} of token "${name}": another holder has the lease now; nothing was written`);
      }
      if (reply !== 'CONFLICT') throw new TokendError('STORE_UNAVAILABLE', `${this.description}: unexpected reply writing token "${name}"`);
    }
    throw new TokendError('STORE_UNAVAILABLE', `${this.description}: token "${name}" kept changing during the ${what}; gave up`);
  }

  /** The WRITE that turns snap into next: the state if its chain part changed, the access token if replaced. */
  private plan(name: string, snap: Snapshot, next: StoredState, dropAccess: boolean): WriteOp {
    const s = snap.state;
    let state: string | null | undefined;
    if (chainKey(next) !== chainKey(s)) {
      const chain = next.refreshToken !== undefined || next.revoked === true || next.intent !== undefined;
      state = chain ? this.encodeState(name, next) : null;
    }
    let access: WriteOp['access'];
    if (dropAccess) {
      access = null;
    } else if (next.access !== undefined && next.access !== s.access) {
      // The TTL is the token's remaining validity by both clocks (a stepped wall clock cannot stretch it).
      const px = Math.floor(remainingMs(next.access, this.clock));
      if (px > 0) access = { token: next.access.accessToken, meta: this.encodeMeta(name, next.access), px };
    }
    return {
      stateWas: expected(snap.rawState),
      metaWas: access !== undefined ? expected(snap.rawMeta) : undefined,
      state,
      access,
    };
  }

  private encodeState(name: string, s: StoredState): string {
    const rt = s.refreshToken !== undefined && this.key ? encryptRefreshToken(s.refreshToken, this.key, name) : s.refreshToken;
    try {
      return encodeStateDoc({ ...s, refreshToken: rt, updatedAt: this.clock.now() });
    } catch (err) {
      throw new TokendError('STORE_UNAVAILABLE', `state of token "${name}" cannot be stored: ${messageOf(err)}`);
    }
  }

  private encodeMeta(name: string, token: AccessToken): string {
    try {
      return encodeMetaMs(token);
    } catch (err) {
      throw new TokendError('STORE_UNAVAILABLE', `access token of "${name}" cannot be stored: ${messageOf(err)}`);
    }
  }

  private async read(name: string, keys: Keys): Promise<Snapshot> {
    const reply = await this.conn.run('read', name, () => this.conn.client.tokendRead(keys.access, keys.meta, keys.state, MAX_ENTRY_BYTES));
    if (!Array.isArray(reply) || reply.length > 3) {
      throw new TokendError('STORE_UNAVAILABLE', `${this.description}: unexpected reply reading token "${name}"`);
    }
    const [rawAccess, rawMeta, rawState] = [0, 1, 2].map((i) => normaliseRaw(reply[i])) as [Raw, Raw, Raw];
    const access = this.decodeAccess(name, keys, rawAccess, rawMeta);
    return { rawMeta, rawState, state: { access, ...this.decodeState(name, keys, rawState) } };
  }

  private decodeAccess(name: string, keys: Keys, rawAccess: Raw, rawMeta: Raw): AccessToken | undefined {
    if (typeof rawMeta === 'number') return void this.onCorrupt(name, keys.meta, rawReason(rawMeta));
    if (typeof rawAccess === 'number') return void this.onCorrupt(name, keys.access, rawReason(rawAccess));
    // Both are written together with the same PX; one without the other is an expiry in between.
    if (rawMeta === undefined || rawAccess === undefined) return undefined;
    let token: AccessToken;
    try {
      token = decodeMetaMs(rawMeta);
    } catch (err) {
      return void this.onCorrupt(name, keys.meta, messageOf(err));
    }
    if (rawAccess.length > MAX_TOKEN_CHARS || rawAccess !== token.accessToken) {
      return void this.onCorrupt(name, keys.access, 'the raw access token does not match its metadata');
    }
    return token;
  }

  private decodeState(name: string, keys: Keys, raw: Raw): StoredState {
    if (raw === undefined) return {};
    if (typeof raw === 'number') {
      this.onCorrupt(name, keys.state, rawReason(raw));
      return {};
    }
    try {
      const doc = decodeStateDoc(raw);
      let refreshToken = doc.refreshToken;
      if (refreshToken !== undefined && isEncrypted(refreshToken)) {
        if (!this.key) throw new TokendError('STORE_UNAVAILABLE', 'refresh token is encrypted but no encryption key is configured');
        refreshToken = decryptRefreshToken(refreshToken, this.key, name);
      }
      return { refreshToken, seedHash: doc.seedHash, revoked: doc.revoked, intent: doc.intent };
    } catch (err) {
      this.onCorrupt(name, keys.state, messageOf(err));
      return {};
    }
  }
}

/** What WRITE compares a key against: its value, null for absent, undefined (no comparison) for an unreadable one. */
function expected(raw: Raw): string | null | undefined {
  if (raw === undefined) return null;
  return typeof raw === 'number' ? undefined : raw;
}

function normaliseRaw(v: unknown): Raw {
  if (v === null || v === undefined || v === false) return undefined;
  if (typeof v === 'number') return v === TOO_LARGE || v === WRONG_TYPE ? v : WRONG_TYPE;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return WRONG_TYPE;
}

function rawReason(marker: number): string {
  return marker === TOO_LARGE ? `value is larger than ${MAX_ENTRY_BYTES} bytes` : 'key holds a non-string value';
}
