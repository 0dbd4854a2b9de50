import { randomUUID } from 'node:crypto';
import { Cluster, Redis, type ClusterOptions, type RedisOptions, type Result } from 'ioredis';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { TokendError } from '../errors.js';
import { EVENTS, serializeError, type Logger } from '../log.js';
import { isUsable, MAX_TOKEN_CHARS, TOKEN_NAME_RE, type AccessToken } from '../token.js';
import { decodeMeta, decodeState, decodeTombstone, encodeMeta, encodeState, encodeTombstone, MAX_ENTRY_BYTES } from './codec.js';
import { decryptRefreshToken, encryptRefreshToken, isEncrypted, KEY_BYTES } from './crypto.js';
import { ACQUIRE, READ, RELEASE, REMOVE, RENEW, WRITE } from './redis-scripts.js';
import type { CorruptionReporter, Lease, LeaseOutcome, SharedStore, StoredState } from './store.js';

// The Lua scripts registered through the `scripts` option, typed as ioredis documents it.
declare module 'ioredis' {
  interface RedisCommander<Context> {
    tokendAcquire(lease: string, fence: string, holder: string, leaseMs: number): Result<[number, number], Context>;
    tokendRenew(lease: string, fence: string, holder: string, fenceNo: number, leaseMs: number): Result<number, Context>;
    tokendRelease(lease: string, fence: string, holder: string, fenceNo: number): Result<number, Context>;
    tokendRead(access: string, meta: string, state: string, maxBytes: number): Result<Array<string | number | null>, Context>;
    tokendWrite(
      access: string,
      meta: string,
      state: string,
      lease: string,
      fence: string,
      ...argv: Array<string | number>
    ): Result<string, Context>;
    tokendRemove(access: string, meta: string, state: string, channel: string, message: string, tombstone: string): Result<number, Context>;
  }
}

/** Options of RedisStore. Durations in milliseconds. */
export interface RedisStoreOptions {
  /**
   * `redis://[user:password@]host:port/db` or `rediss://...` (TLS). Default
   * `redis://127.0.0.1:6379/0`. With `sentinels` or `cluster` only its credentials, db and TLS
   * scheme are used.
   */
  readonly url?: string | undefined;
  /** Key prefix, e.g. `tokend:`. In cluster mode it must contain a hash tag such as `{tokend}:`. */
  readonly prefix: string;
  /** Overrides a password in the URL. */
  readonly password?: string | undefined;
  /** 32-byte AES-256-GCM key: refresh tokens are then stored encrypted (`enc:v1:...`). */
  readonly encryptionKey?: Buffer | undefined;
  /** Redis Sentinel addresses (ioredis's own Sentinel support); needs `sentinelName`. */
  readonly sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** The master group name Sentinel knows. */
  readonly sentinelName?: string | undefined;
  /** Redis Cluster start-up nodes (ioredis's own Cluster support). */
  readonly cluster?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** How long a refresh lease lasts without renewal; renewed every leaseMs/3. At least 300. */
  readonly leaseMs: number;
  /** Identifies this replica in `:lease` values and CLIENT LIST. Default: a random UUID. */
  readonly holderId?: string | undefined;
  readonly logger: Logger;
  /** Called for a stored value that cannot be used (it is then treated as absent). */
  readonly onCorrupt?: CorruptionReporter | undefined;
  /** Passed to ioredis last, so it overrides tokend's defaults (for cluster: the node options). */
  readonly redisOptions?: RedisOptions | undefined;
  /** Extra ioredis Cluster options (cluster mode only). */
  readonly clusterOptions?: ClusterOptions | undefined;
  /** Longest a single command may take before it fails with STORE_UNAVAILABLE. Default 1000. */
  readonly commandTimeoutMs?: number | undefined;
  /** How long init() waits for Redis to become reachable. Default 5000. */
  readonly initTimeoutMs?: number | undefined;
  /** Default: the system clock. */
  readonly clock?: Clock | undefined;
  /** Jitter source for reconnect delays. Default Math.random. */
  readonly random?: (() => number) | undefined;
}

type Client = Redis | Cluster;

/** Largest pub/sub message accepted, in characters: `{"name":...,"generation":...}` is far smaller. */
const MAX_MESSAGE_CHARS = 512;
/** Bound on compare-and-set retries: only unfenced writers racing each other can cause one. */
const MAX_CAS_ATTEMPTS = 8;
const DEFAULT_URL = 'redis://127.0.0.1:6379/0';
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

/** The raw values READ returned: a string, undefined when absent, or a marker number. */
type Raw = string | number | undefined;

/** A state document with the fields only the Redis store adds. */
interface DecodedState {
  /** Undefined in a revocation tombstone. */
  readonly refreshToken: string | undefined;
  readonly seedHash: string | undefined;
  readonly generation: number;
  readonly revoked: boolean;
}

interface Snapshot {
  readonly rawMeta: Raw;
  readonly rawState: Raw;
  readonly access: AccessToken | undefined;
  readonly state: DecodedState | undefined;
}

interface ActiveLease {
  readonly keys: Keys;
  readonly lease: Lease;
  lose(reason: string): void;
  stop(): void;
}

/**
 * The Redis store (ioredis). Keys for token NAME under PREFIX:
 * - `PREFIX+NAME`: the raw access token, PX = its remaining lifetime (never served expired);
 * - `PREFIX+NAME:meta`: the codec's metadata JSON (plus `expires_at_ms`, `obtained_at_ms`), same PX;
 * - `PREFIX+NAME:state`: `{version, refresh_token, seed_hash, updated_at, generation}`, no TTL,
 *   refresh_token as `enc:v1:...` when an encryption key is configured;
 * - `PREFIX+NAME:lease`: the refresh lease holder's id, PX = lease length;
 * - `PREFIX+NAME:fence`: a counter incremented with every lease taken.
 * Every write publishes `{"name","generation"}` on channel `PREFIX+events`.
 *
 * Commands fail fast with STORE_UNAVAILABLE while Redis is unreachable (ioredis keeps
 * reconnecting in the background), so callers keep serving what they hold.
 */
export class RedisStore implements SharedStore {
  readonly kind = 'redis' as const;
  readonly shared = true as const;
  /** This replica's lease holder id. */
  readonly holderId: string;

  private readonly prefix: string;
  private readonly channel: string;
  private readonly leaseMs: number;
  private readonly key: Buffer | undefined;
  private readonly logger: Logger;
  private readonly onCorrupt: CorruptionReporter;
  private readonly clock: Clock;
  private readonly initTimeoutMs: number;
  /** Where Redis is, without credentials: safe for messages and logs. */
  private readonly where: string;
  private readonly secrets: string[];
  private readonly client: Client;
  private readonly makeSubscriber: () => Client;
  private subscriber: Client | undefined;
  private subscribedOk = false;
  private readonly watchers = new Map<string, Set<(state: StoredState) => void>>();
  private readonly notifying = new Map<string, Promise<void>>();
  private readonly renotify = new Set<string>();
  private readonly leases = new Set<ActiveLease>();
  private wasReady = false;
  private outageLogged = false;
  private lastError: string | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: RedisStoreOptions) {
    if (!Number.isFinite(opts.leaseMs) || opts.leaseMs < 300) {
      throw new TokendError('CONFIG_INVALID', 'store.leaseMs must be at least 300 ms');
    }
    if (opts.encryptionKey !== undefined && opts.encryptionKey.length !== KEY_BYTES) {
      throw new TokendError('CONFIG_INVALID', `store.encryptionKeyFile: the key must be ${KEY_BYTES} bytes`);
    }
    if (opts.cluster && !/\{[^}]+\}/.test(opts.prefix)) {
      // One token's keys are used together in one Lua script, so they must share a hash slot.
      throw new TokendError('CONFIG_INVALID', 'store.prefix must contain a hash tag such as "{tokend}:" in cluster mode');
    }
    if (opts.sentinels && !opts.sentinelName) {
      throw new TokendError('CONFIG_INVALID', 'store.sentinelName is required with store.sentinels');
    }
    this.prefix = opts.prefix;
    this.channel = `${opts.prefix}events`;
    this.leaseMs = opts.leaseMs;
    this.key = opts.encryptionKey;
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.initTimeoutMs = opts.initTimeoutMs ?? 5_000;
    this.holderId = opts.holderId ?? randomUUID();
    this.onCorrupt =
      opts.onCorrupt ??
      ((token, what, reason) =>
        this.logger.error({ event: EVENTS.storeCorrupt, token, what, reason }, 'stored entry is corrupt; it will be replaced'));

    const url = parseUrl(opts.url ?? DEFAULT_URL);
    const password = opts.password ?? url.password;
    this.secrets = [password, url.password].filter((s): s is string => typeof s === 'string' && s.length > 0);
    const random = opts.random ?? Math.random;
    const commandTimeout = opts.commandTimeoutMs ?? 1_000;
    const scripts = {
      tokendAcquire: ACQUIRE,
      tokendRenew: RENEW,
      tokendRelease: RELEASE,
      tokendRead: READ,
      tokendWrite: WRITE,
      tokendRemove: REMOVE,
    };
    const nodeOptions: RedisOptions = {
      username: url.username,
      password,
      db: url.db,
      ...(url.tls ? { tls: {} } : {}),
      connectionName: `tokend-${this.holderId.replace(/[^A-Za-z0-9_.:-]/g, '_')}`,
      // Fail fast instead of queueing: a command in flight when the connection drops is rejected
      // at once (not resent later, when its caller has long given up), and commandTimeout bounds
      // a command Redis never answers.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout,
      connectTimeout: 3_000,
      // Reconnect quickly (≤ ~1.1 s) so a restarted Redis is used again within a second or so.
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1_000) + Math.floor(random() * 100),
    };

    if (opts.cluster) {
      const { retryStrategy: _ignored, ...clusterNodeOptions } = nodeOptions;
      const clusterOpts: ClusterOptions = {
        lazyConnect: true,
        enableOfflineQueue: true,
        scripts,
        clusterRetryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 4), 1_000) + Math.floor(random() * 100),
        ...opts.clusterOptions,
        redisOptions: { ...clusterNodeOptions, ...(opts.redisOptions as ClusterOptions['redisOptions']) },
      };
      const nodes = opts.cluster.map((n) => ({ host: n.host, port: n.port }));
      this.where = `redis cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
      this.client = new Cluster(nodes, clusterOpts);
      this.makeSubscriber = () =>
        (this.client as Cluster).duplicate(undefined, {
          ...clusterOpts,
          redisOptions: { ...clusterOpts.redisOptions, maxRetriesPerRequest: null, commandTimeout: undefined },
        });
    } else {
      const options: RedisOptions = {
        ...nodeOptions,
        lazyConnect: true,
        enableOfflineQueue: true,
        scripts,
        ...(opts.sentinels
          ? {
              sentinels: opts.sentinels.map((s) => ({ host: s.host, port: s.port })),
              name: opts.sentinelName,
              ...(url.tls ? { enableTLSForSentinelMode: true } : {}),
            }
          : { host: url.host, port: url.port }),
        ...opts.redisOptions,
      };
      this.where = opts.sentinels
        ? `redis sentinel "${opts.sentinelName}" via ${opts.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`
        : url.safe;
      this.client = new Redis(options);
      // The subscriber waits out outages (it holds no caller) and resubscribes by itself.
      this.makeSubscriber = () =>
        (this.client as Redis).duplicate({ maxRetriesPerRequest: null, commandTimeout: undefined });
    }
    this.attachConnectionLogging(this.client);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Connects and PINGs, waiting up to initTimeoutMs. Rejects with STORE_UNAVAILABLE naming where (never the password). */
  async init(): Promise<void> {
    if (this.closed) throw new TokendError('STORE_UNAVAILABLE', `${this.where}: the store is closed`);
    const client = this.client;
    try {
      if (client.status === 'wait' || client.status === 'end') client.connect().catch(() => undefined);
      await waitReady(client, this.initTimeoutMs);
      await client.ping();
    } catch (err) {
      // Stop reconnecting: a daemon that cannot start must be able to exit.
      client.disconnect();
      throw new TokendError('STORE_UNAVAILABLE', `cannot reach ${this.where}: ${this.scrub(messageOf(err))}`);
    }
  }

  /** True while the main connection is ready (ioredis status 'ready'). */
  isAvailable(): boolean {
    return this.client.status === 'ready';
  }

  /** Aborts and releases held leases, stops watching, closes both connections. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return this.closing;
    this.closing = (async () => {
      const leases = [...this.leases];
      for (const l of leases) l.lose('the store is closing');
      // Released before `closed` is set, which makes every further call fail at once.
      await Promise.all(leases.map((l) => this.release(l).catch(() => undefined)));
      this.closed = true;
      this.watchers.clear();
      const sub = this.subscriber;
      this.subscriber = undefined;
      await Promise.all([quit(this.client), sub ? quit(sub) : Promise.resolve()]);
    })();
    return this.closing;
  }


  // ---------------------------------------------------------------- reads

  /**
   * Reads a token's access token, metadata and refresh-token state in one atomic step. Anything
   * unusable (oversized, wrong type, bad JSON, undecryptable) is reported through onCorrupt and
   * treated as absent; an access token that has expired is absent.
   */
  async load(name: string): Promise<StoredState> {
    const snap = await this.read(name);
    return toStoredState(snap);
  }

  private async read(name: string): Promise<Snapshot> {
    const keys = this.keys(name);
    const reply = await this.run('read', name, () =>
      this.client.tokendRead(keys.access, keys.meta, keys.state, MAX_ENTRY_BYTES),
    );
    if (!Array.isArray(reply) || reply.length > 3) {
      throw new TokendError('STORE_UNAVAILABLE', `${this.where}: unexpected reply reading token "${name}"`);
    }
    const [rawAccess, rawMeta, rawState] = [0, 1, 2].map((i) => normaliseRaw(reply[i])) as [Raw, Raw, Raw];
    return {
      rawMeta,
      rawState,
      access: this.decodeAccess(name, keys, rawAccess, rawMeta),
      state: this.decodeStateValue(name, keys, rawState),
    };
  }

  private decodeAccess(name: string, keys: Keys, rawAccess: Raw, rawMeta: Raw): AccessToken | undefined {
    if (typeof rawMeta === 'number') {
      this.onCorrupt(name, keys.meta, rawReason(rawMeta));
      return undefined;
    }
    if (typeof rawAccess === 'number') {
      this.onCorrupt(name, keys.access, rawReason(rawAccess));
      return undefined;
    }
    // Both are written together with the same PX; one without the other is an expiry in between.
    if (rawMeta === undefined || rawAccess === undefined) return undefined;
    let token: AccessToken;
    try {
      token = decodeMetaMs(rawMeta);
    } catch (err) {
      this.onCorrupt(name, keys.meta, messageOf(err));
      return undefined;
    }
    if (rawAccess.length > MAX_TOKEN_CHARS || rawAccess !== token.accessToken) {
      this.onCorrupt(name, keys.access, 'the raw access token does not match its metadata');
      return undefined;
    }
    // Redis expires the keys itself; this only guards against clock skew between hosts.
    if (!isUsable(token, this.clock)) return undefined;
    return token;
  }

  private decodeStateValue(name: string, keys: Keys, raw: Raw): DecodedState | undefined {
    if (raw === undefined) return undefined;
    if (typeof raw === 'number') {
      this.onCorrupt(name, keys.state, rawReason(raw));
      return undefined;
    }
    try {
      const tombstone = decodeTombstone(raw);
      if (tombstone) return { refreshToken: undefined, seedHash: tombstone.seedHash, generation: tombstone.generation, revoked: true };
      const doc = decodeState(raw);
      let refreshToken = doc.refreshToken;
      if (isEncrypted(refreshToken)) {
        if (!this.key) throw new TokendError('STORE_UNAVAILABLE', 'refresh token is encrypted but no encryption key is configured');
        refreshToken = decryptRefreshToken(refreshToken, this.key, name);
      }
      // decodeState ignores fields it does not know; generation is this store's own.
      const generation = (JSON.parse(raw) as { generation?: unknown }).generation;
      return {
        refreshToken,
        seedHash: doc.seedHash,
        generation: Number.isSafeInteger(generation) && (generation as number) >= 0 ? (generation as number) : 0,
        revoked: false,
      };
    } catch (err) {
      this.onCorrupt(name, keys.state, messageOf(err));
      return undefined;
    }
  }

  // ---------------------------------------------------------------- writes

  /**
   * Stores the refresh token unfenced (seeding, or rewriting after Redis lost its data). Inside a
   * refresh cycle use commit(), which cannot overwrite a newer refresh token.
   */
  async saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void> {
    await this.write(name, undefined, { refreshToken, seedHash });
  }

  /** Stores the access token unfenced, unless the stored one expires later (a stale write is dropped). */
  async saveAccessToken(name: string, token: AccessToken): Promise<void> {
    await this.write(name, undefined, { access: token });
  }

  /**
   * Stores a grant's result if `lease` is still current: one Lua script checks holder and fence,
   * writes the state (when a refresh token is given), the access token and metadata (unless the
   * stored token expires later or this one has expired), and publishes. Rejects with LEASE_LOST
   * when the lease lapsed or was taken over; nothing is written then. A STORE_UNAVAILABLE
   * rejection leaves the outcome unknown (the script may have run).
   */
  async commit(
    lease: Lease,
    update: { access: AccessToken; refreshToken?: string | undefined; seedHash?: string | undefined },
  ): Promise<void> {
    if (lease.signal.aborted) throw leaseLost(lease.name, 'it was lost before the commit');
    await this.write(lease.name, lease, {
      access: update.access,
      ...(update.refreshToken !== undefined ? { refreshToken: update.refreshToken, seedHash: update.seedHash } : {}),
    });
  }

  /** Deletes the access token, metadata and state (the fence and any lease stay), and announces it. */
  async remove(name: string): Promise<void> {
    const keys = this.keys(name);
    const snap = await this.read(name);
    const tombstone = encodeTombstone(snap.state?.seedHash, this.clock.now(), (snap.state?.generation ?? 0) + 1);
    await this.run('remove', name, () =>
      this.client.tokendRemove(keys.access, keys.meta, keys.state, this.channel, message(name, 0), tombstone),
    );
  }

  /** The one write path: read, decide, compare-and-set; retried when an unfenced writer raced us. */
  private async write(
    name: string,
    lease: Lease | undefined,
    update: { access?: AccessToken; refreshToken?: string; seedHash?: string | undefined },
  ): Promise<void> {
    const keys = this.keys(name);
    if (lease && lease.holder !== this.holderId) throw leaseLost(name, 'it belongs to another holder id');
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const snap = await this.read(name);
      const now = this.clock.now();

      let writeAccess = false;
      let accessValue = '';
      let metaValue = '';
      let px = 0;
      if (update.access) {
        px = Math.floor(update.access.expiresAt - now);
        const stored = snap.access;
        // Only the newest token is written (a stale write is dropped).
        // Stale only against a token of the same settings: after a config change the new one wins.
        const stale = stored !== undefined && stored.grantKey === update.access.grantKey && Math.floor(update.access.expiresAt) < stored.expiresAt;
        if (px > 0 && !stale) {
          metaValue = encodeMetaMs(update.access);
          accessValue = update.access.accessToken;
          writeAccess = true;
        } else {
          this.logger.debug({ token: name, stale, expired: px <= 0 }, 'access token not written: stale or expired');
        }
      }

      let generation = snap.state?.generation ?? 0;
      let stateValue = '';
      if (update.refreshToken !== undefined) {
        generation += 1;
        const stored = this.key ? encryptRefreshToken(update.refreshToken, this.key, name) : update.refreshToken;
        const seedHash = update.seedHash ?? (lease ? snap.state?.seedHash : undefined);
        const doc = JSON.parse(encodeState({ refreshToken: stored, seedHash, updatedAt: now })) as Record<string, unknown>;
        stateValue = JSON.stringify({ ...doc, generation });
      }

      const reply = await this.run(lease ? 'commit' : 'write', name, () =>
        this.client.tokendWrite(
          keys.access,
          keys.meta,
          keys.state,
          keys.lease,
          keys.fence,
          lease ? lease.holder : '',
          lease ? lease.fence : 0,
          writeAccess ? '1' : '0',
          accessValue,
          metaValue,
          px,
          ...expectation(writeAccess, snap.rawMeta),
          stateValue ? '1' : '0',
          stateValue,
          ...expectation(stateValue !== '', snap.rawState),
          this.channel,
          message(name, generation),
        ),
      );
      if (reply === 'OK') return;
      if (reply === 'LOST') {
        const active = [...this.leases].find((l) => l.lease === lease);
        active?.lose('the fenced commit found another holder');
        throw leaseLost(name, 'another replica holds the lease now; nothing was written');
      }
      if (reply !== 'CONFLICT') {
        throw new TokendError('STORE_UNAVAILABLE', `${this.where}: unexpected reply writing token "${name}"`);
      }
    }
    throw new TokendError('STORE_UNAVAILABLE', `${this.where}: token "${name}" kept changing during the write; gave up`);
  }

  // ---------------------------------------------------------------- lease

  /**
   * Runs fn holding the fleet-wide refresh lease for name: SET NX PX leaseMs with this holder id
   * plus a new fence number, renewed every leaseMs/3 by compare-and-pexpire, released by
   * compare-and-delete after fn settles. `lease.signal` aborts (reason: TokendError LEASE_LOST)
   * when a renewal finds another holder or no renewal succeeded for leaseMs. When another replica
   * holds the lease, fn does not run and the outcome says how long it still holds it.
   */
  async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    const keys = this.keys(name);
    const sentAt = this.clock.now();
    const reply = await this.run('lease', name, () =>
      this.client.tokendAcquire(keys.lease, keys.fence, this.holderId, this.leaseMs),
    );
    const [taken, value] = Array.isArray(reply) ? reply : [];
    if (Number(taken) !== 1) {
      const ttl = Number(value);
      return { acquired: false, holderTtlMs: Number.isFinite(ttl) && ttl >= 0 ? ttl : this.leaseMs };
    }
    const fence = Number(value);
    const active = this.startLease(name, keys, fence, sentAt);
    try {
      return { acquired: true, value: await fn(active.lease) };
    } finally {
      active.stop();
      await this.release(active).catch((err: unknown) =>
        this.logger.debug({ token: name, err: serializeError(this.toStoreError(err, 'release', name)) }, 'lease release failed; it will lapse'),
      );
    }
  }

  private startLease(name: string, keys: Keys, fence: number, acquiredAt: number): ActiveLease {
    const controller = new AbortController();
    const lease: Lease = { name, holder: this.holderId, fence, signal: controller.signal };
    let renewTimer: Timer | undefined;
    let expiryTimer: Timer | undefined;
    let stopped = false;

    const stop = (): void => {
      stopped = true;
      renewTimer?.cancel();
      expiryTimer?.cancel();
      this.leases.delete(active);
    };
    const lose = (reason: string): void => {
      if (controller.signal.aborted) return;
      stop();
      this.logger.warn({ event: EVENTS.leaseLost, token: name, fence, reason }, 'refresh lease lost');
      controller.abort(leaseLost(name, reason));
    };
    // Redis counts the lease from when it ran the command, which is after we sent it: measuring
    // from the send time makes our deadline the earlier of the two.
    const armExpiry = (from: number): void => {
      expiryTimer?.cancel();
      expiryTimer = this.clock.setTimer(() => lose(`no renewal succeeded for ${this.leaseMs} ms`), from + this.leaseMs - this.clock.now());
    };
    const renew = async (): Promise<void> => {
      if (stopped) return;
      const sentAt = this.clock.now();
      try {
        const ok = await this.run('lease renewal', name, () =>
          this.client.tokendRenew(keys.lease, keys.fence, this.holderId, fence, this.leaseMs),
        );
        if (stopped) return;
        if (Number(ok) !== 1) return lose('another replica holds it now');
        armExpiry(sentAt);
      } catch {
        // Transient: the expiry timer decides when it is too late.
      }
      if (!stopped) renewTimer = this.clock.setTimer(() => void renew(), Math.floor(this.leaseMs / 3));
    };

    const active: ActiveLease = { keys, lease, lose, stop };
    this.leases.add(active);
    armExpiry(acquiredAt);
    renewTimer = this.clock.setTimer(() => void renew(), Math.floor(this.leaseMs / 3));
    return active;
  }

  private async release(active: ActiveLease): Promise<void> {
    const { keys, lease } = active;
    await this.run('lease release', lease.name, () =>
      this.client.tokendRelease(keys.lease, keys.fence, lease.holder, lease.fence),
    );
  }

  // ---------------------------------------------------------------- watch

  /**
   * Calls onChange with the freshly loaded state once soon after watch() (the current state),
   * whenever any replica (this one included) writes name, and after every reconnect (writes may
   * have been missed meanwhile). The state may then be empty: Redis may have lost its data,
   * in which case keep what you hold and write it back. Returns the unsubscribe function.
   */
  watch(name: string, onChange: (state: StoredState) => void): () => void {
    let set = this.watchers.get(name);
    if (!set) {
      set = new Set();
      this.watchers.set(name, set);
    }
    set.add(onChange);
    // Already subscribed: load once now, so every watcher starts from the current state.
    if (this.subscribedOk) this.notify(name);
    else this.ensureSubscribed();
    return () => {
      const s = this.watchers.get(name);
      s?.delete(onChange);
      if (s && s.size === 0) this.watchers.delete(name);
    };
  }

  private ensureSubscribed(): void {
    if (this.closed || this.subscriber) return;
    const sub = this.makeSubscriber();
    this.subscriber = sub;
    let readyBefore = false;
    sub.on('error', () => undefined); // the main connection logs outages
    // ioredis resubscribes after a reconnect; commits published meanwhile were missed, so reload.
    sub.on('ready', () => {
      if (readyBefore) this.notifyAll();
      readyBefore = true;
    });
    sub.on('message', (channel: string, msg: string) => {
      if (channel !== this.channel) return;
      const name = parseMessage(msg);
      if (name !== undefined && this.watchers.has(name)) this.notify(name);
    });
    this.subscribe(sub);
  }

  private subscribe(sub: Client): void {
    // The subscriber queues commands while disconnected, so this fails only when it is closed.
    // Once subscribed, load every watched token: a write between watch() and now was not heard.
    sub.subscribe(this.channel).then(
      () => {
        this.subscribedOk = true;
        this.notifyAll();
      },
      (err: unknown) => this.logger.debug({ err: serializeError(this.toStoreError(err, 'subscribe', '*')) }, 'subscribe failed'),
    );
  }

  private notifyAll(): void {
    for (const name of this.watchers.keys()) this.notify(name);
  }

  /** One load per name at a time; a change arriving meanwhile triggers one more load afterwards. */
  private notify(name: string): void {
    if (this.closed) return;
    if (this.notifying.has(name)) {
      this.renotify.add(name);
      return;
    }
    const p = this.load(name)
      .then((state) => {
        for (const cb of this.watchers.get(name) ?? []) {
          try {
            cb(state);
          } catch (err) {
            this.logger.error({ token: name, err: serializeError(err) }, 'watch callback failed');
          }
        }
      })
      .catch((err: unknown) => this.logger.debug({ token: name, err: serializeError(err) }, 'could not load a changed token'))
      .finally(() => {
        if (this.notifying.get(name) === p) this.notifying.delete(name);
        if (this.renotify.delete(name)) this.notify(name);
      });
    this.notifying.set(name, p);
  }

  // ---------------------------------------------------------------- plumbing

  private keys(name: string): Keys {
    if (!TOKEN_NAME_RE.test(name)) throw new TokendError('CONFIG_INVALID', `token name "${name.slice(0, 64)}" is not valid`);
    const base = this.prefix + name;
    return { access: base, meta: `${base}:meta`, state: `${base}:state`, lease: `${base}:lease`, fence: `${base}:fence` };
  }

  /** Runs one Redis call, failing fast while disconnected; every failure becomes STORE_UNAVAILABLE. */
  private async run<T>(what: string, name: string, op: () => Promise<T>): Promise<T> {
    if (this.closed) throw new TokendError('STORE_UNAVAILABLE', `${what} for token "${name}": the store is closed`);
    if (this.client.status !== 'ready') {
      // A lazy client that never connected starts now (one that ended stays ended: it was closed or told not to retry).
      if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
      throw new TokendError('STORE_UNAVAILABLE', `${what} for token "${name}": ${this.where} is not connected (${this.client.status})`);
    }
    try {
      return await op();
    } catch (err) {
      throw this.toStoreError(err, what, name);
    }
  }

  private toStoreError(err: unknown, what: string, name: string): TokendError {
    if (err instanceof TokendError) return err;
    // No cause attached: ioredis errors carry the command's arguments, which hold token values.
    return new TokendError('STORE_UNAVAILABLE', `${what} for token "${name}" failed at ${this.where}: ${this.scrub(messageOf(err))}`);
  }

  /** Removes the password (plain or URL-encoded) and any URL credentials from a message. */
  private scrub(text: string): string {
    let out = text.replace(/(rediss?:\/\/)[^@/\s]*@/gi, '$1***@');
    for (const s of this.secrets) {
      for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join('***');
    }
    return out.length > 300 ? `${out.slice(0, 300)}...` : out;
  }

  private attachConnectionLogging(client: Client): void {
    // Without an 'error' listener ioredis reports every failed reconnect as an unhandled error.
    client.on('error', (err: unknown) => {
      this.lastError = this.scrub(messageOf(err));
    });
    // Logged once per outage (not per reconnect attempt), when a ready connection is lost.
    client.on('close', () => {
      if (!this.wasReady || this.outageLogged || this.closed || this.closing) return;
      this.outageLogged = true;
      const err = this.lastError ? { type: 'Error', message: this.lastError } : undefined;
      this.logger.warn({ event: EVENTS.storeUnavailable, err, where: this.where }, 'redis unreachable; serving held tokens and reconnecting');
    });
    client.on('ready', () => {
      this.lastError = undefined;
      if (this.wasReady) {
        this.logger.info({ event: EVENTS.storeAvailable, where: this.where }, 'redis reachable again');
        // Commits may have been missed meanwhile, and Redis may have come back empty.
        this.notifyAll();
      }
      this.wasReady = true;
      this.outageLogged = false;
    });
  }
}

// ------------------------------------------------------------------ helpers

interface ParsedUrl {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
  /** The URL without its password. */
  readonly safe: string;
}

/** Parses a redis:// or rediss:// URL; the error never repeats the URL (it may hold a password). */
export function parseUrl(text: string): ParsedUrl {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new TokendError('CONFIG_INVALID', 'store.url is not a valid URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new TokendError('CONFIG_INVALID', 'store.url must start with redis:// or rediss://');
  }
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw new TokendError('CONFIG_INVALID', 'store.url: the path must be a database number');
  const port = u.port === '' ? 6379 : Number(u.port);
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const safeUrl = new URL(u.href);
  safeUrl.password = '';
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    db: dbText === '' ? 0 : Number(dbText),
    username,
    password,
    tls: u.protocol === 'rediss:',
    safe: `${safeUrl.protocol}//${safeUrl.username ? `${safeUrl.username}@` : ''}${safeUrl.host}${safeUrl.pathname}`,
  };
}

/**
 * The codec's metadata plus `expires_at_ms` and `obtained_at_ms`. Whole seconds are enough for a
 * service reading the token, but replicas schedule their refresh from an adopted token's times:
 * rounded down, they would refresh up to a second early, and all of them on the same schedule.
 */
function encodeMetaMs(token: AccessToken): string {
  const doc = JSON.parse(encodeMeta(token)) as Record<string, unknown>;
  return JSON.stringify({ ...doc, expires_at_ms: Math.floor(token.expiresAt), obtained_at_ms: Math.floor(token.obtainedAt) });
}

/** decodeMeta, refined by the millisecond fields when they agree with the whole seconds. */
function decodeMetaMs(text: string): AccessToken {
  const token = decodeMeta(text);
  const doc = JSON.parse(text) as { expires_at_ms?: unknown; obtained_at_ms?: unknown };
  const refine = (ms: unknown, secondsMs: number): number =>
    typeof ms === 'number' && Number.isSafeInteger(ms) && ms >= secondsMs && ms < secondsMs + 1000 ? ms : secondsMs;
  return { ...token, expiresAt: refine(doc.expires_at_ms, token.expiresAt), obtainedAt: refine(doc.obtained_at_ms, token.obtainedAt) };
}

function toStoredState(snap: Snapshot): StoredState {
  return {
    access: snap.access,
    refreshToken: snap.state?.refreshToken,
    seedHash: snap.state?.seedHash,
    revoked: snap.state?.revoked === true ? true : undefined,
  };
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

/** WRITE's expectation arguments: compare against what was read, or '-' for values not written. */
function expectation(writing: boolean, raw: Raw): [string, string] {
  if (!writing) return ['-', ''];
  if (raw === undefined) return ['0', ''];
  // An unreadable value (too large, wrong type) is simply replaced.
  if (typeof raw === 'number') return ['-', ''];
  return ['1', raw];
}

function message(name: string, generation: number): string {
  return JSON.stringify({ name, generation });
}

/** The token name a pub/sub message announces; undefined for anything malformed. */
export function parseMessage(msg: unknown): string | undefined {
  if (typeof msg !== 'string' || msg.length === 0 || msg.length > MAX_MESSAGE_CHARS) return undefined;
  if (TOKEN_NAME_RE.test(msg)) return msg;
  try {
    const doc = JSON.parse(msg) as { name?: unknown };
    return typeof doc?.name === 'string' && TOKEN_NAME_RE.test(doc.name) ? doc.name : undefined;
  } catch {
    return undefined;
  }
}

function leaseLost(name: string, why: string): TokendError {
  return new TokendError('LEASE_LOST', `refresh lease of token "${name}": ${why}`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Resolves when client is ready; rejects after ms (the client keeps reconnecting meanwhile). */
function waitReady(client: Client, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let last = '';
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: unknown): void => {
      last = messageOf(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`not ready within ${ms} ms${last ? ` (${last})` : ''}`));
    }, ms);
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
    };
    client.on('ready', onReady);
    client.on('error', onError);
  });
}

/** QUIT when connected (bounded), else just drop the socket and stop reconnecting. */
async function quit(client: Client): Promise<void> {
  if (client.status === 'ready') {
    await Promise.race([client.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }
  client.disconnect();
}
