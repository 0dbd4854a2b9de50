import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokendError, type ErrorCode } from '../../src/errors.js';
import { classifyGrantError } from '../../src/oauth/classify.js';

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
  rate_limited_retry_after: json(429, { error: 'rate_limited' }, { 'retry-after': '12' }),
  unavailable_retry_after: (res) => void res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': 'Tue, 01 Jan 2030 12:00:00 GMT' }).end('busy'),
  server_error_retry_after: json(500, { error: 'server_error' }, { 'retry-after': '12' }),
  // Only /realm names another issuer; other discovery paths are not found.
  'openid-configuration': (res, req) =>
    req.url?.startsWith('/realm/')
      ? json(200, { issuer: `http://localhost:${req.socket.localPort}/realm`, token_endpoint: `http://localhost:${req.socket.localPort}/token` })(res, req)
      : json(404, { error: 'unknown case' })(res, req),
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
  // Short only where the case is a hang: on a loaded machine a 0.2 s budget made real answers time out.
  config.timeout = tokenEndpoint.endsWith('/hang') ? 0.2 : 10;
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
  retryAfterMs?: number;
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
  // Retry-After is read on 429 and 503 only (classified at "now" = 2030-01-01T11:59:00Z).
  { case: 'rate_limited_retry_after', code: 'GRANT_TRANSIENT', oauthError: 'rate_limited', status: 429, retryAfterMs: 12_000 },
  { case: 'unavailable_retry_after', code: 'GRANT_TRANSIENT', status: 503, retryAfterMs: 60_000 },
  { case: 'server_error_retry_after', code: 'GRANT_TRANSIENT', status: 500 },
];

const CLASSIFIED_AT = Date.UTC(2030, 0, 1, 11, 59, 0);

describe('classifyGrantError maps what openid-client throws', () => {
  it.each(table)('$case → $code', async (row) => {
    const original = await libraryError(row.case);
    const err = classifyGrantError(original, 'orders', 'grant', { now: CLASSIFIED_AT });
    expect(err).toBeInstanceOf(TokendError);
    expect(err.code).toBe(row.code);
    expect(err.oauthError).toBe(row.oauthError);
    expect(err.status).toBe(row.status);
    expect(err.retryAfterMs).toBe(row.retryAfterMs);
    expect(err.message).toContain('token "orders"');
    if (row.oauthError) expect(err.message).toContain(row.oauthError);
    expect(err.message).not.toContain(LEAK);
    expect(err.message).not.toContain('shh-secret');
    // The library error is kept for debugging, but never serialised with the TokendError.
    expect(err.cause).toBe(original);
    expect(Object.keys(err)).not.toContain('cause');
    expect(JSON.stringify(err)).not.toContain(LEAK);
  });

  it('names the member of a 200 answer that openid-client refused, never its value', async () => {
    expect(classifyGrantError(await libraryError('ok_without_access_token'), 'orders').message).toBe(
      'token "orders": grant failed: the IdP\'s answer is not a valid OAuth response (its access_token is missing or invalid, OAUTH_INVALID_RESPONSE)',
    );
    const badExpiry = classifyGrantError(await libraryError('ok_with_bad_expires_in'), 'orders').message;
    expect(badExpiry).toContain('its expires_in is missing or invalid');
    expect(badExpiry).not.toContain('soon');
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

  it('discovery naming another issuer is CONFIG_INVALID (permanent) naming both issuers and what to set', async () => {
    const original = await client
      .discovery(new URL(`${base}/realm`), 'c', undefined, undefined, { execute: [client.allowInsecureRequests], timeout: 0.2 })
      .catch((e: unknown) => e);
    const port = new URL(base).port;
    const err = classifyGrantError(original, 'orders', 'discovery', {
      issuer: `${base}/realm`,
      exchanges: [{ method: 'GET', url: `${base}/realm/.well-known/openid-configuration`, status: 200 }],
    });
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.reason).toBe('issuer_mismatch');
    expect(err.message).toBe(
      `tokens.orders.issuer: GET ${base}/realm/.well-known/openid-configuration names the issuer http://localhost:${port}/realm, not the configured ${base}/realm. ` +
        `Set issuer: http://localhost:${port}/realm (the IdP's name for itself, which it also puts in every token's iss), ` +
        "or make the IdP announce the configured URL (its public or frontend URL setting)",
    );
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

  it('names the host that did not resolve and the host:port that refused', () => {
    const failed = (code: string) => new TypeError('fetch failed', { cause: Object.assign(new Error('x'), { code }) });
    const exchanges = [{ method: 'GET', url: 'https://idp.example/realms/a/.well-known/openid-configuration' }];
    expect(classifyGrantError(failed('ENOTFOUND'), 'orders', 'discovery', { exchanges }).message).toBe(
      'token "orders": discovery failed: GET https://idp.example/realms/a/.well-known/openid-configuration: cannot resolve idp.example: ENOTFOUND',
    );
    expect(classifyGrantError(failed('ECONNREFUSED'), 'orders', 'grant', { exchanges: [{ method: 'POST', url: 'http://10.0.0.7:8080/token' }] }).message).toBe(
      'token "orders": grant failed: POST http://10.0.0.7:8080/token: connection refused by 10.0.0.7:8080 (ECONNREFUSED)',
    );
    expect(classifyGrantError(failed('ECONNRESET'), 'orders', 'grant', { exchanges }).message).toContain('cannot reach idp.example:443 (ECONNRESET)');
  });

  it('returns tokend\'s own error thrown inside the fetch openid-client calls, with its fields', () => {
    const own = new TokendError('GRANT_PERMANENT', 'token "orders": grant failed: the IdP issued a token of type N_A', { reason: 'unsupported_token_type' });
    expect(classifyGrantError(new client.ClientError('something went wrong', { cause: own }), 'orders')).toBe(own);
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
