import type { LogLevel } from '../log.js';
import type { FederationConfig } from './schema-federation.js';
import type { NotifyConfig, OutputConfig } from './schema-output.js';
import type { ProxyConfig } from './schema-proxy.js';

export type { ProxyConfig };
/**
 * The validated, resolved configuration. `schema.ts` parses the documented file format into this;
 * everything else in tokend codes against these types only.
 * Durations are milliseconds unless the name says otherwise.
 */

/** token_exchange: RFC 8693; jwt_bearer: RFC 7523 §2.1 (docs/secretless.md). */
export type GrantType = 'client_credentials' | 'refresh_token' | 'token_exchange' | 'jwt_bearer';
/** What a private_key_jwt client assertion names as its audience. */
export type PrivateKeyAudience = 'token_endpoint' | 'issuer';
/** client_assertion: RFC 7523 §2.2 with a JWT someone else issued, read from clientAssertionFile. */
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'client_assertion' | 'none';

/** A secret that comes from a literal/env value or from a file that may change (Kubernetes Secret). */
export type SecretSource =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: 'file'; readonly path: string };

/** One configured token; the federation fields (client assertion, token exchange, JWT bearer) are in FederationConfig. */
export interface TokenConfig extends FederationConfig {
  /** [a-z0-9][a-z0-9_.-]{0,62} */
  readonly name: string;
  /** OIDC issuer for discovery; exactly one of issuer / tokenEndpoint is set. */
  readonly issuer?: string | undefined;
  /** Plain OAuth2 token endpoint (no discovery). */
  readonly tokenEndpoint?: string | undefined;
  /** Revocation endpoint for plain OAuth2 (discovery provides it otherwise). */
  readonly revocationEndpoint?: string | undefined;
  /** Absent only with clientAuth none and grant token_exchange or jwt_bearer: then no client_id is sent. */
  readonly clientId?: string | undefined;
  readonly clientSecret?: SecretSource | undefined;
  readonly grant: GrantType;
  /** Seed refresh token for grant: refresh_token. */
  readonly refreshToken?: SecretSource | undefined;
  readonly scope?: string | undefined;
  readonly resource?: string | undefined;
  readonly audience?: string | undefined;
  /** Fraction of the lifetime after which to refresh (0 < x < 1). Default 0.75. */
  readonly refreshAt: number;
  readonly clientAuth: ClientAuthMethod;
  /** private_key_jwt: PEM (PKCS#8) or JWK file. */
  readonly privateKeyFile?: string | undefined;
  readonly privateKeyId?: string | undefined;
  /** private_key_jwt signing alg; inferred from the key when absent. */
  readonly privateKeyAlg?: string | undefined;
  /** private_key_jwt: the assertion's aud. Default 'token_endpoint'; 'issuer' for IdPs that want their issuer. */
  readonly privateKeyAudience?: PrivateKeyAudience | undefined;
  readonly revokeOnShutdown: boolean;
  /** Lifetime assumed when the IdP gives neither expires_in nor a JWT exp. Default 300 000. */
  readonly defaultLifetimeMs: number;
  /** Per-request timeout for IdP calls. Default 10 000. */
  readonly timeoutMs: number;
  /** Allow http:// issuers (development only). Default: true only for loopback hosts. */
  readonly allowInsecureHttp: boolean;
  /** Extra files written on every change of the token (docs/outputs.md). Default none. */
  readonly outputs?: readonly OutputConfig[] | undefined;
  /** Who is told when the token changes (docs/outputs.md). Default nobody. */
  readonly notify?: NotifyConfig | undefined;
}

export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export type StoreConfig =
  | { readonly type: 'memory' }
  | { readonly type: 'file'; readonly dir: string; readonly mode: number; readonly stateDir: string }
  | {
      readonly type: 'redis';
      readonly url: string;
      readonly prefix: string;
      readonly password?: SecretSource | undefined;
      /** AES-256-GCM key (32 bytes raw, base64 or hex) for refresh tokens at rest. */
      readonly encryptionKeyFile?: string | undefined;
      readonly sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined;
      readonly sentinelName?: string | undefined;
      readonly cluster?: ReadonlyArray<{ host: string; port: number }> | undefined;
      /** How long a replica holds the refresh lease. Default 15 000. */
      readonly leaseMs: number;
    };

export interface IntrospectionConfig {
  readonly clientId: string;
  readonly clientSecret?: SecretSource | undefined;
  readonly clientAuth: ClientAuthMethod;
}

export interface VerifyIssuerConfig {
  readonly issuer: string;
  readonly audience: readonly string[];
  /** Allowed JWS algorithms; default: asymmetric ones only. Never 'none'. */
  readonly algorithms?: readonly string[] | undefined;
  /** Needed for HS* algorithms; HS* are refused without it. */
  readonly hmacSecret?: SecretSource | undefined;
  readonly clockToleranceSec: number;
  readonly requiredClaims: readonly string[];
  readonly introspection?: IntrospectionConfig | undefined;
  readonly allowInsecureHttp: boolean;
}

export interface VerifyConfig {
  readonly issuers: readonly VerifyIssuerConfig[];
}


export interface Config {
  readonly listen: ListenAddress;
  readonly allowRemote: boolean;
  /** Optional listener for probes and scrapes from outside the pod (GET /healthz, /readyz, /metrics; never a token). */
  readonly metricsListen?: ListenAddress | undefined;
  /** Host names and addresses `/v1/` accepts in the Host header besides loopback ones. Default none. */
  readonly allowedHosts?: readonly string[] | undefined;
  /** Per-token metric series; false keeps only aggregates (very large configurations). Default true. */
  readonly metricsPerToken?: boolean | undefined;
  readonly store: StoreConfig;
  readonly tokens: readonly TokenConfig[];
  readonly verify?: VerifyConfig | undefined;
  readonly logLevel: LogLevel;
  /** Max concurrent grants per IdP (origin), shared by all tokens; createIdpRegistry's `concurrency`. Absent: 4. */
  readonly idpConcurrency?: number | undefined;
  /** node-cron expression for the wall-clock reconcile. Default every 15 s: '*\/15 * * * * *'. */
  readonly reconcileCron: string;
  /** Egress reverse proxies, one per upstream (schema-proxy.ts). */
  readonly proxies?: readonly ProxyConfig[] | undefined;
}
