import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { TokenHandle } from '../refresh/handle.js';
import type { VerifyOutcome } from '../verify/types.js';
import type { SendState } from './responses.js';
import type { HeaderScan, HostPolicy } from './request-guard.js';
import type { TokenEntry } from './token-entry.js';

/** Verifies a bearer token; `signal` aborts when the client goes away or the server closes. */
export type VerifyFunction = (bearer: string, signal: AbortSignal) => Promise<VerifyOutcome>;

/** What the server needs of the metrics: the Prometheus text and its content type. */
export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

/** What the routes every listener serves (/healthz, /readyz, /metrics) need. */
export interface PublicState extends SendState {
  /** The configured tokens by name (readiness reads them). */
  readonly handles: ReadonlyMap<string, TokenHandle>;
  readonly metrics: MetricsSource;
  readonly logger: Logger;
  /** Reused by every request (see scanHeaders). */
  readonly scan: HeaderScan;
}

/** Everything the token endpoint's routes need: one object per server, passed to every handler. */
export interface EndpointState extends PublicState {
  readonly clock: Clock;
  /** Backs `POST /v1/verify`; undefined: that route answers 404. */
  readonly verifier: VerifyFunction | undefined;
  /** Upper bound on one verification (ms). */
  readonly verifyTimeoutMs: number;
  /** Longest accepted request target (bytes). */
  readonly maxUrl: number;
  /** Which Host values `/v1/` accepts. */
  readonly hosts: HostPolicy;
  /** Response caches by token name (configured names only). */
  readonly entries: Map<string, TokenEntry>;
  /** The same entries by whole request path (`/v1/token/NAME`), so the common request is one lookup. */
  readonly byPath: Map<string, TokenEntry>;
}
