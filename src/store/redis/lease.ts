import { randomBytes } from 'node:crypto';
import type { Result } from 'ioredis';
import type { Clock, Timer } from '../../clock.js';
import { TokendError } from '../../errors.js';
import { EVENTS, type Logger } from '../../log.js';
import type { Lease, LeaseOutcome } from '../store.js';
import type { RedisConnection } from './connection.js';

// The Lua commands this module uses (registered by the store through the connection).
declare module 'ioredis' {
  interface RedisCommander<Context> {
    tokendAcquire(lease: string, fence: string, value: string, leaseMs: number, nowMs: number): Result<Array<number | string>, Context>;
    tokendRenew(lease: string, value: string, leaseMs: number): Result<number, Context>;
    tokendRelease(lease: string, value: string): Result<number, Context>;
  }
}

/** Holder ids: what a lease value may name (also the connection name). */
export const HOLDER_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
// `tokend:<holder>:<16 hex nonce>`, or a bare UUID (the holder values of earlier tokend versions).
const TOKEND_VALUE = /^tokend:[A-Za-z0-9_.-]{1,64}:[0-9a-f]{16}$|^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$/;
const MAX_SHOWN_HOLDER = 64;

/** The keys of one token's lease. */
export interface LeaseKeys {
  readonly lease: string;
  readonly fence: string;
}

/** Options of RedisLeases. */
export interface LeaseOptions {
  readonly conn: RedisConnection;
  readonly holderId: string;
  /** Lease length (ms); renewed every third of it. */
  readonly leaseMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called when the fence key was not a counter and ACQUIRE restarted it. */
  readonly onFenceRepaired: (name: string, key: string) => void;
}

interface Active {
  readonly lease: Lease;
  readonly value: string;
  readonly keys: LeaseKeys;
  lose(reason: string): void;
  stop(): void;
}

/** A lease request whose outcome is unknown (it timed out, or the connection dropped): released by value once Redis answers. */
interface Doubtful {
  readonly name: string;
  readonly keys: LeaseKeys;
  readonly value: string;
}

/**
 * The lease role of the Redis store: `PREFIX+NAME:lease` holds `tokend:<holder>:<nonce>` (a new
 * nonce per attempt) with PX = lease length, renewed every third of it by compare-and-pexpire,
 * released by compare-and-delete; `:fence` counts leases taken. A lease held by something that is
 * not tokend (another value, no TTL, a TTL longer than ours) is distrusted and logged. A request
 * tokend gave up on is released by its nonce as soon as Redis answers, so it never blocks.
 */
export class RedisLeases {
  private readonly active = new Set<Active>();
  private readonly doubtful = new Set<Doubtful>();
  private readonly distrusted = new Set<string>();
  private retryTimer: Timer | undefined;

  constructor(private readonly o: LeaseOptions) {
    o.conn.onReconnect(() => this.releaseDoubtful());
  }

  /** See TokenStore.withLease. */
  async withLease<T>(name: string, keys: LeaseKeys, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    const value = `tokend:${this.o.holderId}:${randomBytes(8).toString('hex')}`;
    const sentAt = this.o.clock.monotonic();
    let reply: Array<number | string>;
    try {
      reply = await this.o.conn.run('lease', name, () =>
        this.o.conn.client.tokendAcquire(keys.lease, keys.fence, value, this.o.leaseMs, this.o.clock.now()),
      );
    } catch (err) {
      // It may still run (Redis frozen, reply lost): release it by its nonce once Redis answers.
      if (!(err instanceof TokendError && err.code === 'STORE_AUTH_FAILED')) this.doubt({ name, keys, value });
      throw err;
    }
    const [taken, n, repaired, holder] = Array.isArray(reply) ? reply : [];
    if (Number(repaired) === 1) this.o.onFenceRepaired(name, keys.fence);
    if (Number(taken) !== 1) return this.refused(name, Number(n), typeof holder === 'string' ? holder : '');
    this.distrusted.delete(name);
    const active = this.start(name, keys, value, Number(n), sentAt);
    try {
      return { acquired: true, value: await fn(active.lease) };
    } finally {
      active.stop();
      await this.release(name, keys, value).catch(() => this.doubt({ name, keys, value }));
    }
  }

  /** The lease value of lease while this process holds it; undefined once released or lost. */
  valueOf(lease: Lease): string | undefined {
    for (const a of this.active) if (a.lease === lease) return a.value;
    return undefined;
  }

  /** Aborts lease (a fenced write found another holder). */
  lose(lease: Lease, reason: string): void {
    for (const a of this.active) if (a.lease === lease) a.lose(reason);
  }

  /** Aborts and releases every held lease (the store is closing). */
  async releaseAll(): Promise<void> {
    const held = [...this.active];
    for (const a of held) a.lose('the store is closing');
    await Promise.all(held.map((a) => this.release(a.lease.name, a.keys, a.value).catch(() => undefined)));
    this.retryTimer?.cancel();
  }

  private refused<T>(name: string, pttl: number, holder: string): LeaseOutcome<T> {
    const ttl = Number.isFinite(pttl) ? pttl : -1;
    const holderTtlMs = ttl < 0 ? this.o.leaseMs : Math.min(ttl, this.o.leaseMs);
    const trusted = TOKEND_VALUE.test(holder) && ttl >= 0 && ttl <= this.o.leaseMs;
    if (trusted) {
      this.distrusted.delete(name);
      return { acquired: false, holderTtlMs };
    }
    if (!this.distrusted.has(name)) {
      // Once per episode: until the lease is taken again, or held by a tokend again.
      this.distrusted.add(name);
      this.o.logger.error(
        { event: EVENTS.leaseDistrusted, token: name, holder: showHolder(holder), ttl_ms: ttl, lease_ms: this.o.leaseMs },
        ttl < 0 || ttl > this.o.leaseMs
          ? 'the refresh lease is held without expiry or longer than the configured lease; ignoring it (delete the key to resume coordination)'
          : 'the refresh lease is held by something that is not tokend; ignoring it (delete the key to resume coordination)',
      );
    }
    return { acquired: false, distrusted: true, holderTtlMs };
  }

  private start(name: string, keys: LeaseKeys, value: string, fence: number, sentAt: number): Active {
    const { clock, conn, leaseMs } = this.o;
    const controller = new AbortController();
    const lease: Lease = { name, holder: this.o.holderId, fence, signal: controller.signal };
    let renewTimer: Timer | undefined;
    let expiryTimer: Timer | undefined;
    let stopped = false;
    const stop = (): void => {
      stopped = true;
      renewTimer?.cancel();
      expiryTimer?.cancel();
      this.active.delete(active);
    };
    const lose = (reason: string): void => {
      if (controller.signal.aborted) return;
      stop();
      this.o.logger.warn({ event: EVENTS.leaseLost, token: name, fence, reason }, 'refresh lease lost');
      controller.abort(new TokendError('LEASE_LOST', `refresh lease of token "${name}": ${reason}`));
    };
    // Redis counts the lease from when it ran the command, after we sent it: counting from the send
    // time (on the monotonic clock) makes our deadline the earlier of the two.
    const armExpiry = (from: number): void => {
      expiryTimer?.cancel();
      expiryTimer = clock.setTimer(() => lose(`no renewal succeeded for ${leaseMs} ms`), from + leaseMs - clock.monotonic());
    };
    const renew = async (): Promise<void> => {
      if (stopped) return;
      const at = clock.monotonic();
      try {
        const ok = await conn.run('lease renewal', name, () => conn.client.tokendRenew(keys.lease, value, leaseMs));
        if (stopped) return;
        if (Number(ok) !== 1) return lose('another holder has it now');
        armExpiry(at);
      } catch {
        // Transient: the expiry timer decides when it is too late.
      }
      if (!stopped) renewTimer = clock.setTimer(() => void renew(), Math.floor(leaseMs / 3));
    };
    const active: Active = { lease, value, keys, lose, stop };
    this.active.add(active);
    armExpiry(sentAt);
    renewTimer = clock.setTimer(() => void renew(), Math.floor(leaseMs / 3));
    return active;
  }

  private async release(name: string, keys: LeaseKeys, value: string): Promise<void> {
    await this.o.conn.run('lease release', name, () => this.o.conn.client.tokendRelease(keys.lease, value));
  }

  private doubt(d: Doubtful): void {
    this.doubtful.add(d);
    this.releaseDoubtful();
  }

  /**
   * Releases every doubtful request by its nonce. Sent on the same connection after the request,
   * so Redis runs it after the request (if that ever runs); retried until Redis answers.
   */
  private releaseDoubtful(): void {
    for (const d of [...this.doubtful]) {
      this.release(d.name, d.keys, d.value).then(
        () => this.doubtful.delete(d),
        () => this.scheduleRetry(),
      );
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.o.conn.closed) return;
    this.retryTimer = this.o.clock.setTimer(() => {
      this.retryTimer = undefined;
      this.releaseDoubtful();
    }, Math.min(1_000, Math.floor(this.o.leaseMs / 3)));
  }
}

/** A lease value as it may be logged: printable, at most 64 characters. */
function showHolder(value: string): string {
  const printable = value.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > MAX_SHOWN_HOLDER ? `${printable.slice(0, MAX_SHOWN_HOLDER)}…` : printable;
}
