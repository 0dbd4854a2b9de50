import type { Clock } from '../../src/clock.js';
import { TokendError } from '../../src/errors.js';
import type { TokenSource } from '../../src/oauth/source.js';
import type { AccessToken, GrantResult } from '../../src/token.js';

/** A transient IdP failure, as grants.ts would classify a 503. */
export function transientError(): TokendError {
  return new TokendError('GRANT_TRANSIENT', 'fake idp: token endpoint answered 503', { status: 503 });
}

/** A permanent IdP refusal with the given OAuth error. */
export function permanentError(oauthError = 'invalid_grant'): TokendError {
  return new TokendError('GRANT_PERMANENT', `fake idp: ${oauthError}`, { oauthError, status: 400 });
}

/** Options for {@link FakeSource}. */
export interface FakeSourceOptions {
  readonly clock: Clock;
  /** Lifetime of issued access tokens (ms). Default 60 000. */
  readonly lifetimeMs?: number;
  /** Issue a new refresh token with every grant (RFC 6749 §6 rotation). Default false. */
  readonly rotate?: boolean;
  /** Initial refresh-token seed (what readSeed returns). */
  readonly seed?: string;
  /** Shared ordering log: 'source.obtain' is pushed when a grant returns. */
  readonly events?: string[];
}

/**
 * A TokenSource under the test's control. Like oidc-provider, it tracks rotated refresh tokens and
 * answers invalid_grant to one presented again (counting it in `reuses`). Grants honour the
 * abort signal, and `hold()` parks them until released.
 */
export class FakeSource implements TokenSource {
  lifetimeMs: number;
  rotate: boolean;
  seed: string | undefined;
  /** When set, credentialFingerprint() exists and returns it (client secret hash stand-in). */
  fingerprint: string | undefined;
  /** Refresh tokens presented to obtain(), in order (undefined for client_credentials). */
  readonly presented: Array<string | undefined> = [];
  /** Grants that returned a token. */
  issued = 0;
  /** Times a consumed refresh token was presented. */
  reuses = 0;
  readonly revoked: Array<{ token: string; hint: string }> = [];
  private readonly consumed = new Set<string>();
  private readonly failures: Array<() => Error> = [];
  private failAlways: (() => Error) | undefined;
  private gate: { promise: Promise<void>; open: () => void } | undefined;
  private readonly clock: Clock;
  private readonly events: string[] | undefined;

  constructor(opts: FakeSourceOptions) {
    this.clock = opts.clock;
    this.lifetimeMs = opts.lifetimeMs ?? 60_000;
    this.rotate = opts.rotate ?? false;
    this.seed = opts.seed;
    this.events = opts.events;
  }

  /** Number of obtain() calls (successful or not). */
  get grants(): number {
    return this.presented.length;
  }

  /** The next n grants fail with make(). */
  failNext(make: () => Error, n = 1): void {
    for (let i = 0; i < n; i++) this.failures.push(make);
  }

  /** Every grant fails with make() until succeed(). */
  failAlwaysWith(make: () => Error): void {
    this.failAlways = make;
  }

  succeed(): void {
    this.failAlways = undefined;
    this.failures.length = 0;
  }

  /** Parks grants until the returned function is called. */
  hold(): () => void {
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    const gate = { promise, open };
    this.gate = gate;
    return () => {
      if (this.gate === gate) this.gate = undefined;
      gate.open();
    };
  }

  /** A token as this source would issue it now. */
  makeToken(n: number, lifetimeMs = this.lifetimeMs): AccessToken {
    const now = this.clock.now();
    return { accessToken: `at-${n}`, tokenType: 'Bearer', obtainedAt: now, expiresAt: now + lifetimeMs };
  }

  async obtain(refreshToken: string | undefined, signal?: AbortSignal): Promise<GrantResult> {
    this.presented.push(refreshToken);
    if (this.gate) await abortable(this.gate.promise, signal);
    signal?.throwIfAborted();
    const fail = this.failures.shift() ?? this.failAlways;
    if (fail) throw fail();
    if (refreshToken !== undefined && this.consumed.has(refreshToken)) {
      this.reuses++;
      throw permanentError('invalid_grant');
    }
    const n = ++this.issued;
    let next: string | undefined;
    if (this.rotate && refreshToken !== undefined) {
      this.consumed.add(refreshToken);
      next = `rt-${n}`;
    }
    this.events?.push('source.obtain');
    return { token: this.makeToken(n), refreshToken: next };
  }

  async revoke(token: string, hint: 'refresh_token' | 'access_token'): Promise<void> {
    this.revoked.push({ token, hint });
  }

  async readSeed(): Promise<string | undefined> {
    return this.seed;
  }

  async discover(): Promise<{ tokenEndpoint: string }> {
    return { tokenEndpoint: 'https://idp.test/token' };
  }

  /** Only defined while `fingerprint` is set, like an optional interface member. */
  get credentialFingerprint(): (() => Promise<string>) | undefined {
    const fp = this.fingerprint;
    return fp === undefined ? undefined : async () => fp;
  }
}

function abortable(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
