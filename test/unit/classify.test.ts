import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokendError, type ErrorCode } from '../../src/errors.js';
import { classifyGrantError } from '../../src/oauth/classify.js';
import { jwtLifetimeMs, MAX_LIFETIME_MS, toGrantResult } from '../../src/oauth/grants.js';
import { MAX_TOKEN_CHARS } from '../../src/token.js';
import { rotatedRefreshTokenOf } from '../../src/oauth/source.js';
import fc from 'fast-check';

// Real library errors: openid-client is called against a tiny local server that answers each case.
type Answer = (res: ServerResponse, req: IncomingMessage) => void;
const json = (status: number, body: unknown, headers: Record<string, string> = {}): Answer => (res) =>
  void res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
const text = (status: number, body: string, type = 'text/html'): Answer => (res) => void res.writeHead(status, { 'content-type': type }).end(body);

const LEAK = 'LEAKED-BODY-CONTENT';
const answers: Record<string, Answer> = {
  invalid_grant: json(400, { error: 'invalid_grant', error_description: LEAK }),
  invalid_client: json(401, { error: 'invalid_client' }),
  invalid_client_challenge: json(401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="idp", error="invalid_client"' }),
  unauthorized_client: json(400, { error: 'unauthorized_client' }),
  unsupported_grant_type: json(400, { error: 'unsupported_grant_type' }),
  invalid_scope: json(400, { error: 'invalid_scope' }),
  invalid_target: json(400, { error: 'invalid_target' }),
  access_denied: json(403, { error: 'access_denied' }),
  server_error: json(500, { error: 'server_error', error_description: LEAK }),
  temporarily_unavailable_503: json(503, { error: 'temporarily_unavailable' }),
  temporarily_unavailable_400: json(400, { error: 'temporarily_unavailable' }),
  rate_limited_json: json(429, { error: 'rate_limited' }),
  rate_limited_text: text(429, `Too Many Requests ${LEAK}`, 'text/plain'),
  bad_gateway_html: text(502, `<html>${LEAK}</html>`),
  not_found_html: text(404, `<html>${LEAK}</html>`),
  ok_but_html: text(200, `<html>${LEAK}</html>`),
  ok_but_truncated_json: text(200, '{"access_token":"abc', 'application/json'),
  ok_without_access_token: json(200, { token_type: 'bearer', expires_in: 60 }),
  ok_with_bad_expires_in: json(200, { access_token: 'abc', token_type: 'bearer', expires_in: 'soon' }),
  hang: () => {},
  reset: (_res, req) => void req.socket.destroy(),
};

let server: Server;
let base: string;
let closedPort: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const name = (req.url ?? '').split('/').pop() ?? '';
    req.resume();
    (answers[name] ?? json(404, { error: 'unknown case' }))(res, req);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A port that was just free: connections to it are refused.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  await new Promise((r) => probe.close(r));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function configFor(tokenEndpoint: string, insecure = true): client.Configuration {
  const config = new client.Configuration({ issuer: new URL(tokenEndpoint).origin, token_endpoint: tokenEndpoint }, 'c', undefined, client.ClientSecretBasic('shh-secret'));
  if (insecure) client.allowInsecureRequests(config);
  config.timeout = 0.2;
  return config;
}

/** The error openid-client really throws for a client_credentials grant against this case. */
async function libraryError(caseName: string, endpoint = `${base}/case/${caseName}`, insecure = true): Promise<unknown> {
  try {
    await client.clientCredentialsGrant(configFor(endpoint, insecure), { scope: 'x' });
  } catch (err) {
    return err;
  }
  throw new Error(`case ${caseName} did not fail`);
}

interface Row {
  case: string;
  code: ErrorCode;
  oauthError?: string;
  status?: number;
}

const table: Row[] = [
  { case: 'invalid_grant', code: 'GRANT_PERMANENT', oauthError: 'invalid_grant', status: 400 },
  { case: 'invalid_client', code: 'GRANT_PERMANENT', oauthError: 'invalid_client', status: 401 },
  { case: 'invalid_client_challenge', code: 'GRANT_PERMANENT', oauthError: 'invalid_client', status: 401 },
  { case: 'unauthorized_client', code: 'GRANT_PERMANENT', oauthError: 'unauthorized_client', status: 400 },
  { case: 'unsupported_grant_type', code: 'GRANT_PERMANENT', oauthError: 'unsupported_grant_type', status: 400 },
  { case: 'invalid_scope', code: 'GRANT_PERMANENT', oauthError: 'invalid_scope', status: 400 },
  { case: 'invalid_target', code: 'GRANT_PERMANENT', oauthError: 'invalid_target', status: 400 },
  { case: 'access_denied', code: 'GRANT_PERMANENT', oauthError: 'access_denied', status: 403 },
  // openid-client reads OAuth error bodies of 4xx answers only; a 5xx is classified by its status.
  { case: 'server_error', code: 'GRANT_TRANSIENT', status: 500 },
  { case: 'temporarily_unavailable_503', code: 'GRANT_TRANSIENT', status: 503 },
  { case: 'temporarily_unavailable_400', code: 'GRANT_TRANSIENT', oauthError: 'temporarily_unavailable', status: 400 },
  { case: 'rate_limited_json', code: 'GRANT_TRANSIENT', oauthError: 'rate_limited', status: 429 },
  { case: 'rate_limited_text', code: 'GRANT_TRANSIENT', status: 429 },
  { case: 'bad_gateway_html', code: 'GRANT_TRANSIENT', status: 502 },
  { case: 'not_found_html', code: 'GRANT_TRANSIENT', status: 404 },
  { case: 'ok_but_html', code: 'GRANT_TRANSIENT', status: 200 },
  { case: 'ok_but_truncated_json', code: 'GRANT_TRANSIENT' },
  { case: 'ok_without_access_token', code: 'GRANT_TRANSIENT' },
  { case: 'ok_with_bad_expires_in', code: 'GRANT_TRANSIENT' },
  { case: 'hang', code: 'GRANT_TRANSIENT' },
  { case: 'reset', code: 'GRANT_TRANSIENT' },
];

describe('classifyGrantError maps what openid-client throws', () => {
  it.each(table)('$case → $code', async (row) => {
    const original = await libraryError(row.case);
    const err = classifyGrantError(original, 'orders');
    expect(err).toBeInstanceOf(TokendError);
    expect(err.code).toBe(row.code);
    expect(err.oauthError).toBe(row.oauthError);
    expect(err.status).toBe(row.status);
    expect(err.message).toContain('token "orders"');
    if (row.oauthError) expect(err.message).toContain(row.oauthError);
    expect(err.message).not.toContain(LEAK);
    expect(err.message).not.toContain('shh-secret');
    // The library error is kept for debugging, but never serialised with the TokendError.
    expect(err.cause).toBe(original);
    expect(Object.keys(err)).not.toContain('cause');
    expect(JSON.stringify(err)).not.toContain(LEAK);
  });

  it('names a timeout as such', async () => {
    const err = classifyGrantError(await libraryError('hang'), 'orders');
    expect(err.message).toContain('timed out');
  });

  it('refused connections are GRANT_TRANSIENT and name the network code', async () => {
    const err = classifyGrantError(await libraryError('refused', `${closedPort}/token`), 'orders');
    expect(err.code).toBe('GRANT_TRANSIENT');
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('an http:// endpoint without allowInsecureHttp is CONFIG_INVALID', async () => {
    const err = classifyGrantError(await libraryError('invalid_grant', `${base}/case/invalid_grant`, false), 'orders');
    expect(err.code).toBe('CONFIG_INVALID');
  });

  it('in the discovery phase, refusals and outages are DISCOVERY_FAILED', async () => {
    const notFound = await client
      .discovery(new URL(`${base}/nowhere`), 'c', undefined, undefined, { execute: [client.allowInsecureRequests], timeout: 0.2 })
      .catch((e: unknown) => e);
    expect(classifyGrantError(notFound, 'orders', 'discovery').code).toBe('DISCOVERY_FAILED');
    const refused = await client
      .discovery(new URL(closedPort), 'c', undefined, undefined, { execute: [client.allowInsecureRequests], timeout: 0.2 })
      .catch((e: unknown) => e);
    const err = classifyGrantError(refused, 'orders', 'discovery');
    expect(err.code).toBe('DISCOVERY_FAILED');
    expect(err.message).toContain('discovery');
  });

  it('revocation refusals are GRANT_PERMANENT and say revocation', async () => {
    const revConfig = new client.Configuration(
      { issuer: base, token_endpoint: `${base}/case/x`, revocation_endpoint: `${base}/case/unsupported_grant_type` },
      'c',
      undefined,
      client.ClientSecretBasic('shh-secret'),
    );
    client.allowInsecureRequests(revConfig);
    const original = await client.tokenRevocation(revConfig, 'tok').catch((e: unknown) => e);
    const err = classifyGrantError(original, 'orders', 'revocation');
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.message).toContain('revocation');
  });
});

describe('classifyGrantError on errors built by hand', () => {
  it.each([
    ['fetch failed, ENOTFOUND', new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo'), { code: 'ENOTFOUND' }) })],
    ['fetch failed, undici socket', new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) })],
    ['bare fetch failed', new TypeError('fetch failed')],
    ['AbortError', new DOMException('aborted', 'AbortError')],
    ['TimeoutError', new DOMException('timed out', 'TimeoutError')],
    ['ClientError OAUTH_TIMEOUT', Object.assign(new client.ClientError('operation timed out'), { code: 'OAUTH_TIMEOUT' })],
    ['an unknown Error', new Error('something odd')],
    ['a thrown string', 'weird'],
  ])('%s → GRANT_TRANSIENT', (_label, original) => {
    const err = classifyGrantError(original, 'orders');
    expect(err.code).toBe('GRANT_TRANSIENT');
    expect(err.cause).toBe(original);
  });

  it('passes a TokendError through unchanged', () => {
    const original = new TokendError('CONFIG_INVALID', 'tokens.orders.clientSecret: cannot read');
    expect(classifyGrantError(original, 'orders')).toBe(original);
  });

  it('never echoes an error code that is not an OAuth token', () => {
    const original = new client.ResponseBodyError('x', {
      cause: { error: 'bad\ncode with spaces and a secret' },
      response: new Response('{}', { status: 400 }),
    });
    const err = classifyGrantError(original, 'orders');
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBeUndefined();
    expect(err.message).not.toContain('secret');
  });
});

describe('the IdP answer is untrusted input (toGrantResult)', () => {
  const cfg = { name: 'orders', scope: 'api:read', defaultLifetimeMs: 300_000 };
  const at = Date.UTC(2030, 0, 1);
  const jwt = (claims: Record<string, unknown>): string =>
    `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
  const expectUnusable = (response: Record<string, unknown>, secret?: string): void => {
    let err: unknown;
    try {
      toGrantResult(response as never, at, cfg);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('GRANT_TRANSIENT');
    if (secret) expect((err as TokendError).message).not.toContain(secret);
  };

  it('stamps obtainedAt and expiresAt from the arrival time and expires_in, and normalises token_type', () => {
    const r = toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: 60 }, at, cfg);
    expect(r.token).toEqual({ accessToken: 'abc', tokenType: 'Bearer', obtainedAt: at, expiresAt: at + 60_000, scope: 'api:read' });
    expect(r.refreshToken).toBeUndefined();
    expect(toGrantResult({ access_token: 'abc', token_type: 'BEARER', expires_in: 1, scope: 'granted' }, at, cfg).token).toMatchObject({
      tokenType: 'Bearer',
      scope: 'granted',
    });
  });

  it('refuses an unusable answer but carries its new refresh token (the IdP already rotated), never in the message or JSON', () => {
    let err: unknown;
    try {
      toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: -5, refresh_token: 'rt-new-secret' } as never, at, cfg);
    } catch (e) {
      err = e;
    }
    expect((err as TokendError).code).toBe('GRANT_TRANSIENT');
    expect(rotatedRefreshTokenOf(err)).toBe('rt-new-secret');
    expect((err as Error).message).not.toContain('rt-new-secret');
    expect(JSON.stringify(err)).not.toContain('rt-new-secret');
    // Without a usable refresh token there is nothing to carry.
    try {
      toGrantResult({ access_token: '', token_type: 'bearer', expires_in: 60 } as never, at, cfg);
    } catch (e) {
      expect(rotatedRefreshTokenOf(e)).toBeUndefined();
    }
  });

  it('caps an absurd expires_in at 400 days', () => {
    const r = toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: 1e12 }, at, cfg);
    expect(r.token.expiresAt).toBe(at + MAX_LIFETIME_MS);
  });

  it('without expires_in, uses the JWT lifetime (exp - iat), else exp, else the default lifetime', () => {
    const now = at / 1000;
    // iat/exp an hour off from tokend's clock: only the lifetime (exp - iat) is believed.
    const skewed = jwt({ iat: now + 3600, exp: now + 3600 + 120 });
    expect(toGrantResult({ access_token: skewed, token_type: 'bearer' }, at, cfg).token.expiresAt).toBe(at + 120_000);
    expect(toGrantResult({ access_token: jwt({ exp: now + 90 }), token_type: 'bearer' }, at, cfg).token.expiresAt).toBe(at + 90_000);
    expect(toGrantResult({ access_token: 'opaque', token_type: 'bearer' }, at, cfg).token.expiresAt).toBe(at + 300_000);
    expect(toGrantResult({ access_token: 'not.a.jwt', token_type: 'bearer' }, at, cfg).token.expiresAt).toBe(at + 300_000);
    expect(jwtLifetimeMs(jwt({ exp: 'soon' }), at)).toBeUndefined();
  });

  it('refuses a JWT that is already past its exp rather than serving it', () => {
    expectUnusable({ access_token: jwt({ exp: at / 1000 - 5 }), token_type: 'bearer' });
  });

  it.each([
    ['an empty access_token', { access_token: '', token_type: 'bearer', expires_in: 60 }],
    ['a non-string access_token', { access_token: 42, token_type: 'bearer', expires_in: 60 }],
    ['an access_token over 16 KiB', { access_token: 'a'.repeat(MAX_TOKEN_CHARS + 1), token_type: 'bearer', expires_in: 60 }],
    ['expires_in 0', { access_token: 'abc', token_type: 'bearer', expires_in: 0 }],
    ['a negative expires_in', { access_token: 'abc', token_type: 'bearer', expires_in: -5 }],
    ['expires_in NaN', { access_token: 'abc', token_type: 'bearer', expires_in: Number.NaN }],
    ['expires_in Infinity', { access_token: 'abc', token_type: 'bearer', expires_in: Number.POSITIVE_INFINITY }],
    ['no token_type', { access_token: 'abc', expires_in: 60 }],
    ['an empty refresh_token', { access_token: 'abc', token_type: 'bearer', expires_in: 60, refresh_token: '' }],
  ])('refuses %s', (_label, response) => {
    expectUnusable(response);
  });

  it('refuses tokens with control characters without echoing them', () => {
    expectUnusable({ access_token: 'SECRET\r\nX-Injected: 1', token_type: 'bearer', expires_in: 60 }, 'SECRET');
    expectUnusable({ access_token: 'abc', token_type: 'bearer', expires_in: 60, refresh_token: 'RSECRET\n' }, 'RSECRET');
  });

  it('passes a new refresh token on', () => {
    expect(toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: 60, refresh_token: 'next' }, at, cfg).refreshToken).toBe('next');
  });

  it('property: any positive finite expires_in gives 0 <= expiresAt - arrival <= 400 days', () => {
    fc.assert(
      fc.property(fc.double({ min: Number.MIN_VALUE, max: 1e15, noNaN: true }), fc.integer({ min: 0, max: 4_102_444_800_000 }), (expiresIn, arrival) => {
        const { token } = toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: expiresIn }, arrival, cfg);
        const life = token.expiresAt - token.obtainedAt;
        return token.obtainedAt === arrival && life >= 0 && life <= MAX_LIFETIME_MS;
      }),
    );
  });
});
