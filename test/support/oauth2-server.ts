/**
 * A second, independent OAuth2 server for the grant suite: @node-oauth/oauth2-server 5 on node:http
 * with an in-memory model. It differs from oidc-provider where real IdPs differ:
 * - no discovery (tokend is configured with `tokenEndpoint:`);
 * - client_secret_basic credentials are NOT form-decoded (it uses the `basic-auth` package, which
 *   splits at the first ':' and compares the bytes), like the servers that broke on openid-client's
 *   over-encoding; client_secret_post is read from the form;
 * - refresh_token with rotation: the presented refresh token is deleted, a new one is issued, and
 *   the consumed one is refused with invalid_grant (without revoking its successor).
 * Knobs for tests: answer the next N token requests with 429/503 and a Retry-After, hold token
 * requests at a gate (to count how many are in flight), and issue custom access tokens.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import OAuth2Server from '@node-oauth/oauth2-server';
import { listenOnLoopback, readBody, sendJson } from './http-io.js';

/** A client registered with the server. */
export interface OAuth2Client {
  clientId: string;
  clientSecret: string;
  /** Default: ['client_credentials', 'refresh_token']. */
  grants?: string[];
}

/** Options of startOAuth2Server; every field is optional. */
export interface OAuth2ServerOptions {
  clients?: OAuth2Client[];
  /** Access token lifetime in seconds (the expires_in it answers). Default 60. */
  accessTokenLifetimeSec?: number;
  /** Makes the access token value (e.g. a JWT with its own exp); default: 40 random hex characters. */
  accessToken?: (clientId: string) => string;
}

/** What the server answered so far. */
export interface OAuth2ServerStats {
  /** Successful grants by grant_type. */
  grants: Record<string, number>;
  /** Token-endpoint errors by OAuth error code (invalid_client, invalid_grant, ...; 'throttled' for the 429/503 knob). */
  errors: Record<string, number>;
  /** Token requests received (answered or not yet). */
  requests: number;
  /** The most token requests that were in progress at the same time. */
  maxInFlight: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** The client_id of the last request as the server read it (from Basic, undecoded, or from the form). */
  lastClientId: string | undefined;
}

/** A running server. */
export interface RunningOAuth2Server {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** url + '/token' */
  readonly tokenEndpoint: string;
  /** Stores a refresh token for clientId (as an earlier authorization would have) and returns it. */
  mintRefreshToken(clientId: string, scope?: string): string;
  /** True while the refresh token is still valid (not yet used, or the newest of its chain). */
  hasRefreshToken(token: string): boolean;
  /** The next `times` token requests are answered with status and Retry-After (value as given; undefined: none). */
  throttle(status: 429 | 503, retryAfter: string | undefined, times?: number): void;
  /** Token requests wait until release() is called; resolves nothing, see stats().maxInFlight. */
  hold(): { release(): void; waiting(): number };
  stats(): OAuth2ServerStats;
  close(): Promise<void>;
}

interface StoredToken {
  accessToken: string;
  accessTokenExpiresAt?: Date;
  refreshToken?: string;
  refreshTokenExpiresAt?: Date;
  scope?: string[];
  client: { id: string; grants: string[] };
  user: { id: string };
}

const DEFAULT_CLIENTS: OAuth2Client[] = [{ clientId: 'tokend', clientSecret: 'tokend-dev-secret' }];

/** Starts the server on 127.0.0.1 with an OS-chosen port. Close it with close(). */
export async function startOAuth2Server(opts: OAuth2ServerOptions = {}): Promise<RunningOAuth2Server> {
  const clients = (opts.clients ?? DEFAULT_CLIENTS).map((c) => ({
    id: c.clientId,
    secret: c.clientSecret,
    grants: c.grants ?? ['client_credentials', 'refresh_token'],
  }));
  const refreshTokens = new Map<string, StoredToken>();
  const stats: OAuth2ServerStats = { grants: {}, errors: {}, requests: 0, maxInFlight: 0, connections: 0, lastClientId: undefined };
  const bump = (rec: Record<string, number>, key: string): void => {
    rec[key] = (rec[key] ?? 0) + 1;
  };

  const model = {
    getClient: async (id: string, secret: string | null) => {
      const c = clients.find((x) => x.id === id);
      if (!c || (secret !== null && secret !== undefined && c.secret !== secret)) return null;
      return { id: c.id, grants: c.grants };
    },
    getUserFromClient: async (c: { id: string }) => ({ id: `service:${c.id}` }),
    saveToken: async (token: StoredToken, client: StoredToken['client'], user: StoredToken['user']) => {
      const saved = { ...token, client, user };
      if (token.refreshToken) refreshTokens.set(token.refreshToken, saved);
      return saved;
    },
    getRefreshToken: async (rt: string) => refreshTokens.get(rt) ?? null,
    revokeToken: async (token: StoredToken) => (token.refreshToken ? refreshTokens.delete(token.refreshToken) : false),
    ...(opts.accessToken ? { generateAccessToken: async (client: { id: string }) => opts.accessToken?.(client.id) } : {}),
  };
  const oauth = new OAuth2Server({
    model: model as never,
    accessTokenLifetime: opts.accessTokenLifetimeSec ?? 60,
    refreshTokenLifetime: 86_400,
    alwaysIssueNewRefreshToken: true,
  });

  let throttled: { status: number; retryAfter: string | undefined; left: number } | undefined;
  let gate: { promise: Promise<void>; release: () => void; waiting: number } | undefined;
  let inFlight = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    const raw = await readBody(req);
    if (req.method !== 'POST' || path !== '/token') return void sendJson(res, 404, { error: 'not_found' });
    stats.requests++;
    inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, inFlight);
    try {
      if (gate) {
        gate.waiting++;
        await gate.promise;
      }
      if (throttled && throttled.left > 0) {
        throttled.left--;
        bump(stats.errors, 'throttled');
        const headers: Record<string, string> = throttled.retryAfter === undefined ? {} : { 'retry-after': throttled.retryAfter };
        return void sendJson(res, throttled.status, { error: throttled.status === 429 ? 'rate_limited' : 'temporarily_unavailable' }, headers);
      }
      const body = Object.fromEntries(new URLSearchParams(raw));
      const request = new OAuth2Server.Request({ method: 'POST', headers: req.headers as Record<string, string>, query: {}, body });
      const response = new OAuth2Server.Response({});
      try {
        await oauth.token(request, response);
        bump(stats.grants, String(body.grant_type));
      } catch (err) {
        bump(stats.errors, (err as { name?: string }).name ?? 'unknown');
      } finally {
        stats.lastClientId = basicUser(req.headers.authorization) ?? body.client_id;
      }
      sendJson(res, response.status ?? 200, response.body, response.headers as Record<string, string>);
    } finally {
      inFlight--;
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    });
  });
  server.on('connection', () => void stats.connections++);
  const { url, close } = await listenOnLoopback(server);

  return {
    url,
    tokenEndpoint: `${url}/token`,
    mintRefreshToken(clientId, scope) {
      const c = clients.find((x) => x.id === clientId);
      if (!c) throw new Error(`oauth2 server: unknown client ${clientId}`);
      const rt = randomBytes(20).toString('hex');
      refreshTokens.set(rt, {
        accessToken: '',
        refreshToken: rt,
        refreshTokenExpiresAt: new Date(Date.now() + 86_400_000),
        ...(scope ? { scope: scope.split(' ') } : {}),
        client: { id: c.id, grants: c.grants },
        user: { id: 'dev-user' },
      });
      return rt;
    },
    hasRefreshToken: (rt) => refreshTokens.has(rt),
    throttle(status, retryAfter, times = 1) {
      throttled = { status, retryAfter, left: times };
    },
    hold() {
      let release!: () => void;
      const promise = new Promise<void>((r) => {
        release = r;
      });
      const g = { promise, release, waiting: 0 };
      gate = g;
      return {
        release() {
          if (gate === g) gate = undefined;
          g.release();
        },
        waiting: () => g.waiting,
      };
    },
    stats: () => ({ ...stats, grants: { ...stats.grants }, errors: { ...stats.errors } }),
    close() {
      gate?.release();
      return close();
    },
  };
}

/** The user part of a Basic header, as the server reads it: bytes up to the first ':', not decoded. */
function basicUser(header: string | undefined): string | undefined {
  const m = /^Basic (.+)$/i.exec(header ?? '');
  if (!m?.[1]) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i < 0 ? undefined : decoded.slice(0, i);
}
