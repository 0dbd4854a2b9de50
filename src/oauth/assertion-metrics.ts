/**
 * How long the federated credentials tokend presents still live, as Prometheus gauges on a
 * registry the caller owns (the daemon passes its Metrics registry). The token sources report each
 * credential's exp whenever they read it (every grant, and every credential check after a file
 * change); the gauges compute the seconds left at scrape time, so they fall steadily between reads
 * and an alert fires when kubelet stops rotating the file. Labels carry token names and kinds only.
 *
 * - `tokend_client_assertion_expiry_seconds{token}`: seconds until the client assertion
 *   (clientAssertionFile) expires; 0 once it has
 * - `tokend_federated_token_expiry_seconds{token,kind}`: the same for the other files: kind
 *   `assertion` (jwt_bearer), `subject_token`, `actor_token` (token_exchange)
 */
import { Gauge, type Registry } from '../util/prom.js';
import type { Clock } from '../clock.js';
import type { FederatedKind } from './federated.js';

/** Told the exp of each federated credential a token source reads. */
export interface CredentialExpiryObserver {
  /** expMs: the credential's exp (ms since the epoch); undefined when it has none or is not a JWT (the series is dropped). */
  observe(token: string, kind: FederatedKind, expMs: number | undefined): void;
}

const CLIENT_ASSERTION = 'tokend_client_assertion_expiry_seconds';
const FEDERATED = 'tokend_federated_token_expiry_seconds';

/** The two gauges on one registry. Create with {@link AssertionMetrics.on}. */
export class AssertionMetrics implements CredentialExpiryObserver {
  private readonly exp = new Map<string, { token: string; kind: FederatedKind; expMs: number }>();

  private constructor(private readonly clock: Pick<Clock, 'now'>) {}

  /** The gauges on registry, reading "now" from clock at scrape time. One instance per registry. */
  static on(registry: Registry, clock: Pick<Clock, 'now'>): AssertionMetrics {
    const m = new AssertionMetrics(clock);
    const secondsLeft = (expMs: number): number => Math.max(0, Math.floor((expMs - m.clock.now()) / 1000));
    new Gauge({
      name: CLIENT_ASSERTION,
      help: 'Seconds until the client assertion read from clientAssertionFile expires; 0 once it has.',
      labelNames: ['token'],
      registers: [registry],
      collect() {
        this.reset();
        for (const e of m.exp.values()) if (e.kind === 'client_assertion') this.set({ token: e.token }, secondsLeft(e.expMs));
      },
    });
    new Gauge({
      name: FEDERATED,
      help: 'Seconds until a federated token tokend presents (kind assertion, subject_token, actor_token) expires; 0 once it has.',
      labelNames: ['token', 'kind'],
      registers: [registry],
      collect() {
        this.reset();
        for (const e of m.exp.values()) if (e.kind !== 'client_assertion') this.set({ token: e.token, kind: e.kind }, secondsLeft(e.expMs));
      },
    });
    return m;
  }

  /** See CredentialExpiryObserver.observe. */
  observe(token: string, kind: FederatedKind, expMs: number | undefined): void {
    const key = `${kind}\u0000${token}`;
    if (expMs === undefined) this.exp.delete(key);
    else this.exp.set(key, { token, kind, expMs });
  }
}
