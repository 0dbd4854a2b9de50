import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { VerifyIssuerConfig, Config } from '../../src/config/types.js';
import { ConfigError, TokendError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { createVerifier, type VerifierDeps } from '../../src/verify/verifier.js';
import { runVerifyCommand } from '../../src/verify/cli.js';
import type { Verifier } from '../../src/verify/types.js';
import { FakeClock } from '../support/fake-clock.js';

// ---------------------------------------------------------------------------------------------
// A tiny local IdP: discovery, JWKS and RFC 7662 introspection on 127.0.0.1, counting requests.
// ---------------------------------------------------------------------------------------------

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function newKey(kid: string, alg = 'ES256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

type IntrospectionAnswer = { status: number; body: unknown };

interface LocalIdp {
  issuer: string;
  counts: { discovery: number; jwks: number; introspection: number };
  /** Keys published at jwks_uri. */
  published: SigningKey[];
  jwksStatus: number;
  discoveryStatus: number;
  /** Leave discovery requests unanswered (until close). */
  discoveryHangs: boolean;
  /** Answers an introspection request for token (client already authenticated). */
  introspect: (token: string) => IntrospectionAnswer;
  /** A path ('/jwks', '/introspect', '/.well-known/openid-configuration') answered with a 100 MiB chunked body instead. */
  flood: string | undefined;
  /** Bytes of the flood written so far, and a promise settled once its connection closed. */
  flooded: { bytes: number; closed: Promise<void> };
  close(): Promise<void>;
}

const INTROSPECTION_CLIENT = { id: 'orders-api', secret: 'introspection-secret' };

async function startLocalIdp(opts: { introspection?: boolean } = {}): Promise<LocalIdp> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const idp: LocalIdp = {
    issuer,
    counts: { discovery: 0, jwks: 0, introspection: 0 },
    published: [],
    jwksStatus: 200,
    discoveryStatus: 200,
    discoveryHangs: false,
    introspect: () => ({ status: 200, body: { active: false } }),
    flood: undefined,
    flooded: { bytes: 0, closed: Promise.resolve() },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const flood = (res: ServerResponse): void => {
    let closed: () => void = () => undefined;
    idp.flooded = { bytes: 0, closed: new Promise((resolve) => (closed = resolve)) };
    res.on('close', () => closed());
    // Chunked, no Content-Length: only reading the stream can tell how large it is.
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, ' ');
    const pump = (): void => {
      while (!res.destroyed && idp.flooded.bytes < 100 * 1024 * 1024) {
        idp.flooded.bytes += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === idp.flood) {
      req.resume();
      return flood(res);
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/.well-known/openid-configuration') {
        idp.counts.discovery++;
        if (idp.discoveryHangs) return;
        if (idp.discoveryStatus !== 200) return send(res, idp.discoveryStatus, { error: 'server_error' });
        return send(res, 200, {
          issuer,
          jwks_uri: `${issuer}/jwks`,
          token_endpoint: `${issuer}/token`,
          ...(opts.introspection ? { introspection_endpoint: `${issuer}/introspect` } : {}),
        });
      }
      if (req.url === '/jwks') {
        idp.counts.jwks++;
        return send(res, idp.jwksStatus, { keys: idp.published.map((k) => k.jwk) });
      }
      if (req.url === '/introspect' && req.method === 'POST') {
        idp.counts.introspection++;
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding.
        const basic = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
        const [id, secret] = basic.split(':').map((p) => decodeURIComponent(p.replace(/\+/g, ' ')));
        if (id !== INTROSPECTION_CLIENT.id || secret !== INTROSPECTION_CLIENT.secret) {
          return send(res, 401, { error: 'invalid_client' });
        }
        const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token') ?? '';
        const answer = idp.introspect(token);
        return send(res, answer.status, answer.body);
      }
      send(res, 404, { error: 'not_found' });
    });
  });
  return idp;
}

// ---------------------------------------------------------------------------------------------

const AUD = 'orders-api';
let clock: FakeClock;
let idp: LocalIdp;
let k1: SigningKey;
let logLines: string[];
let verifiers: Verifier[];

const nowSec = (): number => Math.floor(clock.now() / 1000);

function issuerConfig(over: Partial<VerifyIssuerConfig> = {}): VerifyIssuerConfig {
  return {
    issuer: idp.issuer,
    audience: [AUD, 'other-api'],
    clockToleranceSec: 0,
    requiredClaims: [],
    allowInsecureHttp: true,
    ...over,
  };
}

function verifier(issuers: VerifyIssuerConfig[] = [issuerConfig()], over: Partial<VerifierDeps> = {}): Verifier {
  const logger = createLogger('trace', { write: (s: string) => void logLines.push(s) });
  const v = createVerifier({ issuers }, { clock, logger, readSecret: async (s) => (s.kind === 'literal' ? s.value : 'x'), ...over });
  verifiers.push(v);
  return v;
}

async function sign(
  claims: Record<string, unknown> = {},
  header: { kid?: string; alg?: string } = {},
  key: SigningKey | Uint8Array = k1,
): Promise<string> {
  const alg = header.alg ?? (key instanceof Uint8Array ? 'HS256' : key.alg);
  const kid = 'kid' in header ? header.kid : key instanceof Uint8Array ? undefined : key.kid;
  return new SignJWT({
    iss: idp.issuer,
    aud: AUD,
    sub: 'svc-orders',
    iat: nowSec(),
    exp: nowSec() + 300,
    ...claims,
  })
    .setProtectedHeader({ alg, ...(kid !== undefined ? { kid } : {}) })
    .sign(key instanceof Uint8Array ? key : key.privateKey);
}

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

beforeEach(async () => {
  clock = new FakeClock(Date.now());
  idp = await startLocalIdp({ introspection: true });
  k1 = await newKey('k1');
  idp.published = [k1];
  logLines = [];
  verifiers = [];
});

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(verifiers.map((v) => v.close()));
  await idp.close();
});

describe('JWT access tokens', () => {
  it('accepts a valid token and returns its verified claims', async () => {
    const token = await sign({ scope: 'orders:read' });
    const outcome = await verifier().verify(token, new AbortController().signal);
    expect(outcome).toEqual({
      active: true,
      issuer: idp.issuer,
      claims: expect.objectContaining({ sub: 'svc-orders', aud: AUD, scope: 'orders:read', iss: idp.issuer }),
    });
    expect(idp.counts).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it('fetches discovery and the JWKS once, then verifies from memory', async () => {
    const v = verifier();
    for (let i = 0; i < 20; i++) expect((await v.verify(await sign({ jti: String(i) }))).active).toBe(true);
    expect(idp.counts).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it('refuses a token whose payload was changed after signing: signature', async () => {
    const [h, , s] = (await sign()).split('.');
    const forged = `${h}.${b64({ iss: idp.issuer, aud: AUD, sub: 'admin', exp: nowSec() + 300 })}.${s}`;
    expect(await verifier().verify(forged)).toEqual({ active: false, reason: 'signature' });
  });

  it('refuses an expired token, and honours the clock tolerance', async () => {
    const token = await sign({ iat: nowSec() - 400, exp: nowSec() - 10 });
    expect(await verifier().verify(token)).toEqual({ active: false, reason: 'expired' });
    expect((await verifier([issuerConfig({ clockToleranceSec: 30 })]).verify(token)).active).toBe(true);
  });

  it('judges expiry on the injected clock', async () => {
    const v = verifier();
    const token = await sign({ exp: nowSec() + 60 });
    expect((await v.verify(token)).active).toBe(true);
    await clock.advance(61_000);
    expect(await v.verify(token)).toEqual({ active: false, reason: 'expired' });
  });

  it('refuses a token whose nbf lies in the future: not_yet_valid', async () => {
    const token = await sign({ nbf: nowSec() + 120 });
    expect(await verifier().verify(token)).toEqual({ active: false, reason: 'not_yet_valid' });
  });

  it('refuses a token for another audience, and one naming no audience: audience', async () => {
    const v = verifier();
    expect(await v.verify(await sign({ aud: 'billing-api' }))).toEqual({ active: false, reason: 'audience' });
    expect(await v.verify(await sign({ aud: undefined }))).toEqual({ active: false, reason: 'audience' });
    expect((await v.verify(await sign({ aud: ['billing-api', 'other-api'] }))).active).toBe(true);
  });

  it('refuses a token from an untrusted issuer without contacting any IdP: issuer', async () => {
    const v = verifier();
    expect(await v.verify(await sign({ iss: 'https://evil.example' }))).toEqual({ active: false, reason: 'issuer' });
    expect(await v.verify(await sign({ iss: undefined }))).toEqual({ active: false, reason: 'issuer' });
    expect(idp.counts).toMatchObject({ discovery: 0, jwks: 0 });
  });

  it('refuses alg "none", with or without a signature part: algorithm', async () => {
    const v = verifier();
    const claims = { iss: idp.issuer, aud: AUD, sub: 'x', exp: nowSec() + 300 };
    expect(await v.verify(`${b64({ alg: 'none' })}.${b64(claims)}.`)).toEqual({ active: false, reason: 'algorithm' });
    expect(await v.verify(`${b64({ alg: 'none', kid: 'k1' })}.${b64(claims)}.AAAA`)).toEqual({ active: false, reason: 'algorithm' });
  });

  it('refuses an HS256 token when no HMAC secret is configured: algorithm', async () => {
    const token = await sign({}, {}, new TextEncoder().encode('k1-public-key-material-used-as-secret'));
    expect(await verifier().verify(token)).toEqual({ active: false, reason: 'algorithm' });
  });

  it('refuses an algorithm outside the configured list: algorithm', async () => {
    const rsa = await newKey('r1', 'RS256');
    idp.published = [k1, rsa];
    const v = verifier([issuerConfig({ algorithms: ['ES256'] })]);
    expect(await v.verify(await sign({}, {}, rsa))).toEqual({ active: false, reason: 'algorithm' });
    expect((await v.verify(await sign())).active).toBe(true);
  });

  it('verifies HS256 with the configured secret, and refuses another secret: signature', async () => {
    const secret = 'a-shared-secret-of-at-least-32-bytes!';
    const v = verifier([issuerConfig({ hmacSecret: { kind: 'literal', value: secret } })]);
    expect((await v.verify(await sign({}, {}, new TextEncoder().encode(secret)))).active).toBe(true);
    const other = await sign({}, {}, new TextEncoder().encode('another-secret-another-secret-another'));
    expect(await v.verify(other)).toEqual({ active: false, reason: 'signature' });
  });

  it('refuses a token signed with a key the IdP does not publish: unknown_key', async () => {
    const stranger = await newKey('k-unknown');
    expect(await verifier().verify(await sign({}, {}, stranger))).toEqual({ active: false, reason: 'unknown_key' });
  });

  it('refuses a token without a required claim: missing_claim', async () => {
    const v = verifier([issuerConfig({ requiredClaims: ['sub', 'scope'] })]);
    expect(await v.verify(await sign())).toEqual({ active: false, reason: 'missing_claim' });
    expect((await v.verify(await sign({ scope: 'orders:read' }))).active).toBe(true);
  });

  it.each([
    ['an empty string', () => ''],
    ['text with spaces', () => 'not a token'],
    ['three parts that are not JSON', () => 'a.b.c'],
    ['a header that is not an object', () => `${b64('x')}.${b64({ iss: idp.issuer, aud: AUD })}.sig`],
    ['a payload that is not JSON', () => `${b64({ alg: 'ES256' })}.bm90LWpzb24.sig`],
    ['an alg that is not a string', () => `${b64({ alg: 256, kid: 'k1' })}.${b64({ iss: idp.issuer, aud: AUD })}.sig`],
    ['a kid that is not a string', () => `${b64({ alg: 'ES256', kid: { k: 1 } })}.${b64({ iss: idp.issuer, aud: AUD })}.sig`],
    ['an oversized credential', () => 'a'.repeat(20_000)],
  ])('refuses %s: malformed', async (_what, token) => {
    expect(await verifier().verify(token())).toEqual({ active: false, reason: 'malformed' });
  });

  it('refuses a header that is not JSON even from a trusted issuer: malformed', async () => {
    const [, p, s] = (await sign()).split('.');
    expect(await verifier().verify(`bm90LWpzb24.${p}.${s}`)).toEqual({ active: false, reason: 'malformed' });
  });

  it('never writes the token into the verdict or the log', async () => {
    const v = verifier([issuerConfig({ requiredClaims: ['scope'] })]);
    const tokens = [
      await sign({ scope: 's' }),
      await sign(),
      await sign({ exp: nowSec() - 5 }),
      await sign({ aud: 'x' }),
      await sign({}, {}, await newKey('nope')),
    ];
    const verdicts = await Promise.all(tokens.map((t) => v.verify(t)));
    idp.jwksStatus = 500;
    await expect(verifier().verify(tokens[0]!)).rejects.toThrow(TokendError);
    expect(logLines.length).toBeGreaterThan(3);
    const output = JSON.stringify(verdicts) + logLines.join('');
    for (const t of tokens) {
      expect(output).not.toContain(t);
      expect(output).not.toContain(t.split('.')[2]);
    }
  });
});

describe('JWKS caching and key rotation', () => {
  it('follows a key rotation: a new kid is fetched once and no verification fails', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const v = verifier();
    const results: boolean[] = [];
    for (let i = 0; i < 5; i++) results.push((await v.verify(await sign())).active);
    expect(idp.counts.jwks).toBe(1);

    // Rotation at the IdP, well after the last fetch (as rotations are): k2 signs, k1 still published.
    const k2 = await newKey('k2');
    idp.published = [k2, k1];
    vi.setSystemTime(Date.now() + 31_000);
    for (let i = 0; i < 5; i++) results.push((await v.verify(await sign({}, {}, k2))).active);
    results.push((await v.verify(await sign())).active);

    expect(results.every(Boolean)).toBe(true);
    expect(idp.counts.jwks).toBe(2);
  });

  it('survives a burst of 1,000 tokens with random kids with at most a handful of JWKS fetches', async () => {
    const v = verifier();
    expect((await v.verify(await sign())).active).toBe(true);
    const forger = await newKey('forger');
    const forged = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => sign({ jti: String(i) }, { kid: `kid-${Math.random().toString(36).slice(2)}` }, forger)),
    );
    const verdicts = await Promise.all(forged.map((t) => v.verify(t)));
    expect(verdicts.every((o) => !o.active && o.reason === 'unknown_key')).toBe(true);
    expect(idp.counts.jwks).toBeLessThanOrEqual(3);
    // The genuine key still works during and after the flood.
    expect((await v.verify(await sign())).active).toBe(true);
  });

  it('fetches the JWKS once for a cold burst of concurrent valid tokens', async () => {
    const v = verifier();
    const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => sign({ jti: String(i) })));
    const verdicts = await Promise.all(tokens.map((t) => v.verify(t)));
    expect(verdicts.every((o) => o.active)).toBe(true);
    expect(idp.counts).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it('reports a JWKS outage as unavailable (GRANT_TRANSIENT), never as a bad token', async () => {
    idp.jwksStatus = 503;
    const v = verifier();
    const err = await v.verify(await sign()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('GRANT_TRANSIENT');
    idp.jwksStatus = 200;
    expect((await v.verify(await sign())).active).toBe(true);
  });

  it('reports an unreachable issuer as GRANT_TRANSIENT', async () => {
    const token = await sign();
    await idp.close();
    await expect(verifier().verify(token)).rejects.toMatchObject({ code: 'GRANT_TRANSIENT' });
    idp = await startLocalIdp();
  });

  it('after a failed discovery fails fast for the retry window instead of asking again per request', async () => {
    idp.discoveryStatus = 500;
    const v = verifier([issuerConfig()], { discoveryRetryMs: 5_000 });
    const token = await sign();
    for (let i = 0; i < 3; i++) await expect(v.verify(token)).rejects.toMatchObject({ code: 'GRANT_TRANSIENT' });
    expect(idp.counts.discovery).toBe(1);
    const warnings = logLines.map((l) => JSON.parse(l) as { event?: string; issuer?: string; error?: { message?: string } }).filter((l) => l.event === 'verify.unavailable');
    expect(warnings).toHaveLength(1);
    idp.discoveryStatus = 200;
    await clock.advance(5_000);
    expect((await v.verify(token)).active).toBe(true);
    expect(idp.counts.discovery).toBe(2);
  });

  it('rejects with the abort reason when the caller has gone away', async () => {
    const ac = new AbortController();
    const reason = new Error('client closed');
    ac.abort(reason);
    await expect(verifier().verify(await sign(), ac.signal)).rejects.toBe(reason);
  });

  it('stops waiting for a hanging IdP as soon as the caller aborts', async () => {
    idp.discoveryHangs = true;
    const ac = new AbortController();
    const pending = verifier().verify(await sign(), ac.signal);
    await vi.waitFor(() => expect(idp.counts.discovery).toBe(1));
    const reason = new Error('client closed');
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it('stops accepting a key the IdP removed once the cached JWKS is stale', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const v = verifier([issuerConfig()], { jwksCacheMaxAgeMs: 600_000 });
    const old = await sign();
    expect((await v.verify(old)).active).toBe(true);
    idp.published = [await newKey('k2')];
    vi.setSystemTime(Date.now() + 300_000);
    expect((await v.verify(old)).active).toBe(true); // still inside the cache lifetime
    vi.setSystemTime(Date.now() + 301_000);
    expect(await v.verify(old)).toEqual({ active: false, reason: 'unknown_key' });
    expect(idp.counts.jwks).toBe(2);
  });

  it('refuses a removed key right after a refetch triggered by a new kid', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const v = verifier();
    const old = await sign();
    expect((await v.verify(old)).active).toBe(true);
    const k2 = await newKey('k2');
    idp.published = [k2];
    vi.setSystemTime(Date.now() + 31_000);
    expect((await v.verify(await sign({}, {}, k2))).active).toBe(true);
    expect(await v.verify(old)).toEqual({ active: false, reason: 'unknown_key' });
    expect(idp.counts.jwks).toBe(2);
  });
});

describe('opaque tokens (RFC 7662 introspection)', () => {
  const introspecting = (over: Partial<VerifyIssuerConfig> = {}): VerifyIssuerConfig =>
    issuerConfig({
      introspection: {
        clientId: INTROSPECTION_CLIENT.id,
        clientSecret: { kind: 'literal', value: INTROSPECTION_CLIENT.secret },
        clientAuth: 'client_secret_basic',
      },
      ...over,
    });
  const OPAQUE = 'opaque-token-value-4f9c2b7e1a';

  it('introspects an opaque token and returns the claims of an active one', async () => {
    idp.introspect = (t) => ({
      status: 200,
      body: t === OPAQUE ? { active: true, iss: idp.issuer, aud: AUD, sub: 'svc', scope: 'a b', exp: nowSec() + 600 } : { active: false },
    });
    const outcome = await verifier([introspecting()]).verify(OPAQUE);
    expect(outcome).toEqual({
      active: true,
      issuer: idp.issuer,
      claims: { iss: idp.issuer, aud: AUD, sub: 'svc', scope: 'a b', exp: expect.any(Number) },
    });
  });

  it('answers a repeated token from the cache without another request', async () => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD, exp: nowSec() + 600 } });
    const v = verifier([introspecting()]);
    expect((await v.verify(OPAQUE)).active).toBe(true);
    expect((await v.verify(OPAQUE)).active).toBe(true);
    expect(idp.counts.introspection).toBe(1);
  });

  it('makes one request for concurrent verifications of the same token', async () => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD, exp: nowSec() + 600 } });
    const v = verifier([introspecting()]);
    const verdicts = await Promise.all(Array.from({ length: 10 }, () => v.verify(OPAQUE)));
    expect(verdicts.every((o) => o.active)).toBe(true);
    expect(idp.counts.introspection).toBe(1);
  });

  it('never keeps a result past the token expiry', async () => {
    const exp = nowSec() + 10;
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD, exp } });
    const v = verifier([introspecting()]);
    expect((await v.verify(OPAQUE)).active).toBe(true);
    await clock.advance(9_000);
    expect((await v.verify(OPAQUE)).active).toBe(true);
    expect(idp.counts.introspection).toBe(1);
    await clock.advance(2_000);
    expect(await v.verify(OPAQUE)).toEqual({ active: false, reason: 'expired' });
    expect(idp.counts.introspection).toBe(2);
  });

  it('keeps an active result for at most 60 s even when the token lives longer', async () => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD, exp: nowSec() + 3600 } });
    const v = verifier([introspecting()]);
    await v.verify(OPAQUE);
    await clock.advance(59_000);
    await v.verify(OPAQUE);
    expect(idp.counts.introspection).toBe(1);
    await clock.advance(2_000);
    expect((await v.verify(OPAQUE)).active).toBe(true);
    expect(idp.counts.introspection).toBe(2);
  });

  it('refuses an inactive token and caches that only briefly', async () => {
    idp.introspect = () => ({ status: 200, body: { active: false } });
    const v = verifier([introspecting()]);
    expect(await v.verify(OPAQUE)).toEqual({ active: false, reason: 'inactive' });
    expect(await v.verify(OPAQUE)).toEqual({ active: false, reason: 'inactive' });
    expect(idp.counts.introspection).toBe(1);
    expect(logLines.join('')).not.toContain(OPAQUE);
    await clock.advance(5_000);
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD } });
    expect((await v.verify(OPAQUE)).active).toBe(true);
    expect(idp.counts.introspection).toBe(2);
  });

  it.each([
    ['another audience', 'audience', { aud: 'billing-api' }],
    ['no audience at all', 'audience', { aud: undefined }],
    ['another issuer', 'issuer', { iss: 'https://evil.example' }],
    ['an exp in the past', 'expired', { exp: 1 }],
    ['an nbf in the future', 'not_yet_valid', { nbf: 4_000_000_000 }],
  ] as const)('checks the introspection answer: %s → %s', async (_what, reason, over) => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD, ...over } });
    expect(await verifier([introspecting()]).verify(OPAQUE)).toEqual({ active: false, reason });
  });

  it('checks required claims on the introspection answer', async () => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD } });
    expect(await verifier([introspecting({ requiredClaims: ['sub'] })]).verify(OPAQUE)).toEqual({
      active: false,
      reason: 'missing_claim',
    });
  });

  it('refuses an opaque token as malformed when no issuer can introspect', async () => {
    expect(await verifier([issuerConfig()]).verify(OPAQUE)).toEqual({ active: false, reason: 'malformed' });
    expect(idp.counts.introspection).toBe(0);
  });

  it('reports a refused introspection client as GRANT_PERMANENT and a 5xx as GRANT_TRANSIENT', async () => {
    const wrong = introspecting({
      introspection: { clientId: INTROSPECTION_CLIENT.id, clientSecret: { kind: 'literal', value: 'wrong' }, clientAuth: 'client_secret_basic' },
    });
    await expect(verifier([wrong]).verify(OPAQUE)).rejects.toMatchObject({ code: 'GRANT_PERMANENT', status: 401 });
    idp.introspect = () => ({ status: 503, body: { error: 'temporarily_unavailable' } });
    await expect(verifier([introspecting()]).verify(OPAQUE)).rejects.toMatchObject({ code: 'GRANT_TRANSIENT' });
  });

});

describe('answers from the IdP are read up to 1 MiB', () => {
  const MiB = 1024 * 1024;
  const warnings = (): Array<{ issuer?: string; error?: { message?: string } }> =>
    logLines.map((l) => JSON.parse(l) as { event?: string; issuer?: string; error?: { message?: string } }).filter((l) => l.event === 'verify.unavailable');

  it('answers GRANT_TRANSIENT (503), never a bad token, to a JWKS streaming 100 MB, and never holds it in memory', async () => {
    idp.flood = '/jwks';
    const v = verifier();
    const token = await sign();
    const rssBefore = process.memoryUsage().rss;
    const err = await v.verify(token).catch((e: unknown) => e);
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    expect(err).toBeInstanceOf(TokendError);
    expect(err).toMatchObject({
      code: 'GRANT_TRANSIENT',
      message: `verify: JWKS of issuer ${idp.issuer}: the answer is larger than ${MiB} bytes; refused unread`,
    });
    // Reading stopped at the limit: the IdP could send little beyond it before the connection closed.
    await idp.flooded.closed;
    expect(idp.flooded.bytes).toBeLessThan(20 * MiB);
    expect(rssGrowth).toBeLessThan(16 * MiB);
    expect(warnings()).toEqual([
      expect.objectContaining({ issuer: idp.issuer, error: expect.objectContaining({ message: expect.stringContaining(`larger than ${MiB} bytes`) }) }),
    ]);
    // Once the IdP answers normally again, so does the verifier.
    idp.flood = undefined;
    expect((await v.verify(token)).active).toBe(true);
  });

  it('refuses an oversized discovery document the same way, naming it', async () => {
    idp.flood = '/.well-known/openid-configuration';
    const err = await verifier().verify(await sign()).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'GRANT_TRANSIENT',
      message: `verify: discovery of issuer ${idp.issuer}: the answer is larger than ${MiB} bytes; refused unread`,
    });
    await idp.flooded.closed;
    expect(idp.flooded.bytes).toBeLessThan(20 * MiB);
    expect(warnings()[0]?.error?.message).toContain('discovery');
  });

  it('refuses an oversized introspection answer the same way, and caches no verdict', async () => {
    const v = verifier([
      issuerConfig({
        introspection: { clientId: INTROSPECTION_CLIENT.id, clientSecret: { kind: 'literal', value: INTROSPECTION_CLIENT.secret }, clientAuth: 'client_secret_basic' },
      }),
    ]);
    idp.flood = '/introspect';
    const err = await v.verify('opaque-token-value-4f9c2b7e1a').catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'GRANT_TRANSIENT',
      message: `verify: introspection at issuer ${idp.issuer}: the answer is larger than ${MiB} bytes; refused unread`,
    });
    await idp.flooded.closed;
    expect(idp.flooded.bytes).toBeLessThan(20 * MiB);
    idp.flood = undefined;
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD } });
    expect((await v.verify('opaque-token-value-4f9c2b7e1a')).active).toBe(true);
  });
});

describe('one discovery and one JWKS fetch per issuer', () => {
  it('shares one discovery among concurrent first requests, and one introspection client with JWT verification', async () => {
    idp.introspect = () => ({ status: 200, body: { active: true, aud: AUD } });
    const v = verifier([
      issuerConfig({
        introspection: { clientId: INTROSPECTION_CLIENT.id, clientSecret: { kind: 'literal', value: INTROSPECTION_CLIENT.secret }, clientAuth: 'client_secret_basic' },
      }),
    ]);
    const jwts = await Promise.all(Array.from({ length: 25 }, (_, i) => sign({ jti: String(i) })));
    const opaque = Array.from({ length: 25 }, (_, i) => `opaque-token-${i}`);
    const verdicts = await Promise.all([...jwts, ...opaque].map((t) => v.verify(t)));
    expect(verdicts.every((o) => o.active)).toBe(true);
    expect(idp.counts).toEqual({ discovery: 1, jwks: 1, introspection: 25 });
  });

  it('discovers again after close, and a discovery still in flight at close is not kept', async () => {
    idp.discoveryHangs = true;
    const v = verifier();
    const token = await sign();
    const first = v.verify(token, AbortSignal.timeout(50)).catch((e: unknown) => e);
    await vi.waitFor(() => expect(idp.counts.discovery).toBe(1));
    await v.close();
    idp.discoveryHangs = false;
    expect((await v.verify(token)).active).toBe(true);
    expect(idp.counts.discovery).toBe(2);
    expect(await first).toBeInstanceOf(DOMException);
  });

  it('refuses two entries for one issuer (tokens are routed by iss: the second could never be used)', () => {
    expect(() => verifier([issuerConfig(), issuerConfig({ audience: ['billing-api'] })])).toThrow(
      new ConfigError(['verify.issuers[1].issuer: duplicate issuer']),
    );
  });
});

describe('configuration it refuses', () => {
  it.each([
    ['alg none', { algorithms: ['RS256', 'none'] }, 'algorithms'],
    ['HS256 without a secret', { algorithms: ['HS256'] }, 'HS256 needs hmacSecret'],
    ['an http issuer without allowInsecureHttp', { allowInsecureHttp: false }, 'must be https'],
    ['no audience', { audience: [] }, 'audience'],
  ] as const)('%s', (_what, over, message) => {
    expect(() => verifier([issuerConfig(over)])).toThrow(ConfigError);
    expect(() => verifier([issuerConfig(over)])).toThrow(message);
  });
});

describe('tokend verify (runVerifyCommand)', () => {
  const config = (): Config =>
    ({ verify: { issuers: [issuerConfig()] }, logLevel: 'error' }) as unknown as Config;

  it('prints the verdict as JSON and exits 0 for a valid token, 1 for an invalid one', async () => {
    const lines: string[] = [];
    const logger = createLogger('trace', { write: (s: string) => void logLines.push(s) });
    const good = await sign();
    expect(await runVerifyCommand(config(), `Bearer ${good}\n`, (s) => lines.push(s), { clock, logger })).toBe(0);
    expect(JSON.parse(lines[0]!)).toMatchObject({ active: true, issuer: idp.issuer, claims: { sub: 'svc-orders' } });
    const expired = await sign({ exp: nowSec() - 60 });
    expect(await runVerifyCommand(config(), expired, (s) => lines.push(s), { clock, logger })).toBe(1);
    expect(JSON.parse(lines[1]!)).toEqual({ active: false, reason: 'expired' });
    expect(lines.join('')).not.toContain(good);
  });

  it('refuses to run without a verify section', async () => {
    await expect(runVerifyCommand({ logLevel: 'error' } as unknown as Config, 'x', () => {})).rejects.toBeInstanceOf(ConfigError);
  });
});
