import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { parseRedisUrl, type RedisUrlParts } from '../../config/fields.js';
import { TokendError } from '../../errors.js';
import { EVENTS, type Logger } from '../../log.js';
import type { ScriptDef } from './scripts.js';

/** An ioredis client: a single node (or Sentinel-managed master), or a Cluster. */
export type Client = Redis | Cluster;

/** Where Redis is and how to talk to it. Durations in ms. */
export interface ConnectionOptions {
  /** `redis[s]://[user:password@]host:port/db` (config/fields.ts parseRedisUrl); with sentinels or cluster only its credentials, db and scheme count. */
  readonly url?: string | undefined;
  /** Overrides a password in the URL. */
  readonly password?: string | undefined;
  readonly sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined;
  readonly sentinelName?: string | undefined;
  readonly cluster?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** Shown in CLIENT LIST as `tokend-<id>`. */
  readonly clientName: string;
  readonly logger: Logger;
  /** Lua scripts registered as commands (ioredis defineCommand: EVALSHA with EVAL fallback). */
  readonly scripts: Record<string, ScriptDef>;
  readonly redisOptions?: RedisOptions | undefined;
  readonly clusterOptions?: ClusterOptions | undefined;
  /** Longest a command may take before it fails. Default 1000. */
  readonly commandTimeoutMs?: number | undefined;
  /** How long init() waits for Redis. Default 5000. */
  readonly initTimeoutMs?: number | undefined;
  /** Jitter for reconnect delays. Default Math.random. */
  readonly random?: (() => number) | undefined;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379/0';
// Redis's answers when it refuses tokend's credentials or permissions.
const AUTH_ERROR = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

/**
 * The connection role of the Redis store: builds the ioredis client (single node, Sentinel or
 * Cluster) from the parsed URL, runs commands failing fast while disconnected, turns every error
 * into a TokendError without credentials (STORE_AUTH_FAILED for refused credentials or
 * permissions, STORE_UNAVAILABLE otherwise), and logs outages once each.
 */
export class RedisConnection {
  readonly client: Client;
  /** Where Redis is, without credentials: safe for messages and logs. */
  readonly where: string;
  /** The ACL user tokend authenticates as. */
  readonly user: string;
  private readonly logger: Logger;
  private readonly initTimeoutMs: number;
  private readonly secrets: string[];
  private readonly makeSubscriber: () => Client;
  private readonly reconnectListeners = new Set<() => void>();
  private wasReady = false;
  private outageLogged = false;
  private lastError: string | undefined;
  private authError: TokendError | undefined;
  private closedFlag = false;

  constructor(opts: ConnectionOptions) {
    let url: RedisUrlParts;
    try {
      url = parseRedisUrl(opts.url || DEFAULT_URL);
    } catch (err) {
      throw new TokendError('CONFIG_INVALID', `store.url: ${(err as Error).message}`);
    }
    const password = opts.password ?? url.password;
    this.secrets = [password, url.password].filter((s): s is string => typeof s === 'string' && s.length > 0);
    this.user = url.username ?? 'default';
    this.logger = opts.logger;
    this.initTimeoutMs = opts.initTimeoutMs ?? 5_000;
    const random = opts.random ?? Math.random;
    const node: RedisOptions = {
      username: url.username,
      password,
      db: url.db,
      ...(url.tls ? { tls: {} } : {}),
      connectionName: opts.clientName,
      // Fail fast instead of queueing: a command in flight when the connection drops is rejected
      // at once (not resent later, when its caller has long given up), and commandTimeout bounds
      // a command Redis never answers.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.commandTimeoutMs ?? 1_000,
      connectTimeout: 3_000,
      // Reconnect quickly (≤ ~1.1 s) so a restarted Redis is used again within a second or so.
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1_000) + Math.floor(random() * 100),
    };
    const scripts = opts.scripts;
    if (opts.cluster) {
      const { retryStrategy: _ignored, ...clusterNode } = node;
      const clusterOpts: ClusterOptions = {
        lazyConnect: true,
        enableOfflineQueue: true,
        scripts,
        clusterRetryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 4), 1_000) + Math.floor(random() * 100),
        ...opts.clusterOptions,
        redisOptions: { ...clusterNode, ...(opts.redisOptions as ClusterOptions['redisOptions']) },
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
      const sentinel = opts.sentinels
        ? {
            sentinels: opts.sentinels.map((s) => ({ host: s.host, port: s.port })),
            name: opts.sentinelName,
            ...(url.tls ? { enableTLSForSentinelMode: true } : {}),
          }
        : { host: url.host, port: url.port };
      this.where = opts.sentinels
        ? `redis sentinel "${opts.sentinelName}" via ${opts.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`
        : url.safe;
      this.client = new Redis({ ...node, lazyConnect: true, enableOfflineQueue: true, scripts, ...sentinel, ...opts.redisOptions });
      // The subscriber waits out outages (it holds no caller) and resubscribes by itself.
      this.makeSubscriber = () => (this.client as Redis).duplicate({ maxRetriesPerRequest: null, commandTimeout: undefined });
    }
    this.attachLogging();
  }

  /** True once close() began: every call fails. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** True while the main connection is ready. */
  isReady(): boolean {
    return this.client.status === 'ready';
  }

  /**
   * Connects and PINGs within initTimeoutMs. Rejects at once with STORE_AUTH_FAILED when Redis
   * refuses the credentials (WRONGPASS, NOAUTH, NOPERM), else with STORE_UNAVAILABLE naming where.
   */
  async init(): Promise<void> {
    if (this.closedFlag) throw new TokendError('STORE_UNAVAILABLE', `${this.where}: the store is closed`);
    const client = this.client;
    try {
      if (client.status === 'wait' || client.status === 'end') client.connect().catch(() => undefined);
      await this.waitReady();
      await client.ping();
    } catch (err) {
      // Stop reconnecting: a daemon that cannot start must be able to exit.
      client.disconnect();
      throw this.toStoreError(err, 'connect', undefined);
    }
  }

  /** A second client for pub/sub (it queues commands while disconnected and resubscribes itself). */
  subscriber(): Client {
    return this.makeSubscriber();
  }

  /** Calls fn whenever the main connection is ready again after an outage. Returns unsubscribe. */
  onReconnect(fn: () => void): () => void {
    this.reconnectListeners.add(fn);
    return () => void this.reconnectListeners.delete(fn);
  }

  /** Runs one Redis call, failing fast while disconnected; every failure becomes a TokendError. */
  async run<T>(what: string, name: string, op: () => Promise<T>): Promise<T> {
    if (this.closedFlag) throw new TokendError('STORE_UNAVAILABLE', `${what} for token "${name}": the store is closed`);
    if (this.client.status !== 'ready') {
      if (this.authError) throw this.authError;
      // A lazy client that never connected starts now (one that ended stays ended).
      if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
      throw new TokendError('STORE_UNAVAILABLE', `${what} for token "${name}": ${this.where} is not connected (${this.client.status})`);
    }
    try {
      return await op();
    } catch (err) {
      throw this.toStoreError(err, what, name);
    }
  }

  /**
   * The TokendError for a failed call. No cause is attached: ioredis errors carry the command's
   * arguments, which hold token values.
   */
  toStoreError(err: unknown, what: string, name: string | undefined): TokendError {
    if (err instanceof TokendError) return err;
    const text = this.scrub(messageOf(err));
    if (AUTH_ERROR.test(text)) return this.authFailure(text, what);
    const subject = name === undefined ? '' : ` for token "${name}"`;
    return new TokendError('STORE_UNAVAILABLE', `${what}${subject} failed at ${this.where}: ${text}`);
  }

  /** Removes the password (plain or URL-encoded) and any URL credentials from a message; bounded. */
  scrub(text: string): string {
    let out = text.replace(/(rediss?:\/\/)[^@/\s]*@/gi, '$1***@');
    for (const s of this.secrets) {
      for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join('***');
    }
    return out.length > 300 ? `${out.slice(0, 300)}...` : out;
  }

  /** Stops reconnecting and closes the main connection (QUIT when connected, bounded). */
  async close(): Promise<void> {
    this.closedFlag = true;
    this.reconnectListeners.clear();
    await quit(this.client);
  }

  private authFailure(text: string, what: string): TokendError {
    const kind = /^\w+/.exec(text)?.[0] ?? 'NOPERM';
    const command = /'([^']+)' command/.exec(text)?.[1];
    const target = /permissions to access (?:a|one of the) (\w+)/.exec(text)?.[1];
    const cls = command ? `${commandClass(command)} (${command.toUpperCase()})` : target ? `${target} access` : 'authentication (AUTH/HELLO)';
    return new TokendError(
      'STORE_AUTH_FAILED',
      `${this.where} refused user "${this.user}": ${kind} for ${cls} during ${what}; ` +
        (kind === 'NOPERM' ? 'grant the user that permission (ACL SETUSER)' : 'check store.password / passwordFile and the user in store.url'),
    );
  }

  private waitReady(): Promise<void> {
    const client = this.client;
    if (client.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      let last = '';
      const onReady = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err: unknown): void => {
        last = messageOf(err);
        // Refused credentials will not get better by waiting: report them at once.
        if (AUTH_ERROR.test(last)) {
          cleanup();
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`cannot reach ${this.where}: not ready within ${this.initTimeoutMs} ms${last ? ` (${last})` : ''}`));
      }, this.initTimeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('error', onError);
      };
      client.on('ready', onReady);
      client.on('error', onError);
    });
  }

  private attachLogging(): void {
    const client = this.client;
    // Without an 'error' listener ioredis reports every failed reconnect as an unhandled error.
    client.on('error', (err: unknown) => {
      this.lastError = this.scrub(messageOf(err));
      if (AUTH_ERROR.test(this.lastError)) this.authError = this.authFailure(this.lastError, 'reconnect');
    });
    // Logged once per outage (not per reconnect attempt), when a ready connection is lost.
    client.on('close', () => {
      if (!this.wasReady || this.outageLogged || this.closedFlag) return;
      this.outageLogged = true;
      const err = this.lastError ? { type: 'Error', message: this.lastError } : undefined;
      this.logger.warn({ event: EVENTS.storeUnavailable, err, where: this.where }, 'redis unreachable; serving held tokens and reconnecting');
    });
    client.on('ready', () => {
      this.lastError = undefined;
      this.authError = undefined;
      if (this.wasReady) {
        this.logger.info({ event: EVENTS.storeAvailable, where: this.where }, 'redis reachable again');
        for (const fn of [...this.reconnectListeners]) fn();
      }
      this.wasReady = true;
      this.outageLogged = false;
    });
  }
}

/** What kind of permission a command needs, for an operator reading a NOPERM message. */
function commandClass(command: string): string {
  const c = command.toLowerCase().split('|')[0] ?? '';
  if (['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'script', 'fcall'].includes(c)) return 'scripting';
  if (['subscribe', 'psubscribe', 'ssubscribe', 'publish', 'unsubscribe'].includes(c)) return 'pub/sub';
  if (['auth', 'hello'].includes(c)) return 'authentication';
  if (['client', 'select', 'ping', 'info', 'quit'].includes(c)) return 'connection';
  return 'keyspace';
}

/** A message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** QUIT when connected (bounded), else just drop the socket and stop reconnecting. */
export async function quit(client: Client): Promise<void> {
  if (client.status === 'ready') {
    await Promise.race([client.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }
  client.disconnect();
}
