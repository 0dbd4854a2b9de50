/**
 * Federated credentials read from files (src/oauth/federated.ts), the margin for another token
 * used as subject (src/oauth/federated-grant.ts) and the expiry gauges (assertion-metrics.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectedVolume } from '../../dev/cluster.js';
import { TokendError } from '../../src/errors.js';
import { AssertionMetrics } from '../../src/oauth/assertion-metrics.js';
import { assertFresh, describeClaims, FEDERATED_MIN_REMAINING_MS, readFederatedToken, readJwtClaims, type FederatedToken } from '../../src/oauth/federated.js';
import { subjectMarginMs } from '../../src/oauth/federated-grant.js';
import { FakeClock } from '../support/fake-clock.js';

const NOW = Date.UTC(2025, 0, 1);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (payload: Record<string, unknown>): string => `${b64({ alg: 'RS256', kid: 'k' })}.${b64(payload)}.c2lnbmF0dXJl`;
const claims = { iss: 'https://kubernetes.default.svc.cluster.local', sub: 'system:serviceaccount:shop:orders', aud: ['api://AzureADTokenExchange'], iat: NOW / 1000, exp: NOW / 1000 + 600, jti: 'j-1' };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-federated-unit-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function thrown(fn: () => unknown): TokendError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TokendError);
    return err as TokendError;
  }
  throw new Error('expected a TokendError');
}

describe('readJwtClaims: what a JWT says, read without verifying, kept only when safe to show', () => {
  it('reads iss, sub, aud (string or list), exp and iat in ms, and jti', () => {
    expect(readJwtClaims(jwt(claims))).toEqual({ iss: claims.iss, sub: claims.sub, aud: claims.aud, expMs: NOW + 600_000, iatMs: NOW, jti: 'j-1' });
    expect(readJwtClaims(jwt({ aud: 'one' }))?.aud).toEqual(['one']);
  });

  it('is undefined for anything that is not a compact JWS with a JSON object payload', () => {
    for (const v of ['opaque-token', 'a.b', `${b64({})}.${b64([1])}.x`, `${b64({})}.${Buffer.from('not json').toString('base64url')}.x`, 'a.b.c.d.e']) {
      expect(readJwtClaims(v), v).toBeUndefined();
    }
  });

  it('drops values a message must not carry (control characters, very long strings)', () => {
    const c = readJwtClaims(jwt({ sub: 'line\nbreak', iss: 'x'.repeat(300), aud: ['ok', 'bad\u0000'] }));
    expect(c).toMatchObject({ sub: undefined, iss: undefined, aud: ['ok'] });
    expect(describeClaims(c)).toBe('iss (none), sub (none), aud ok');
  });
});

describe('assertFresh: a federated token with too little life left is never sent', () => {
  const token = (expMs: number | undefined): FederatedToken => ({ kind: 'client_assertion', source: '/t', value: 'v', claims: { expMs } });

  it(`passes with exactly ${FEDERATED_MIN_REMAINING_MS} ms left and fails 1 ms later, with reason client_assertion_expired`, () => {
    expect(() => assertFresh(token(NOW + FEDERATED_MIN_REMAINING_MS), 'orders', NOW)).not.toThrow();
    const err = thrown(() => assertFresh(token(NOW + FEDERATED_MIN_REMAINING_MS - 1), 'orders', NOW));
    expect(err).toMatchObject({ code: 'GRANT_TRANSIENT', reason: 'client_assertion_expired' });
    expect(err.message).toBe('token "orders": the client assertion from /t expires in 9 s, under the 10 s margin; not sent, waiting for a fresh one (kubelet rewrites a projected token once 80% of its life has passed)');
  });

  it('names how long ago an expired one expired, and the reason follows the kind', () => {
    const err = thrown(() => assertFresh({ ...token(NOW - 61_000), kind: 'subject_token' }, 'narrow', NOW));
    expect(err.reason).toBe('subject_token_expired');
    expect(err.message).toContain('the subject token from /t expired 61 s ago; not sent');
  });

  it('lets a token without exp through (the IdP decides)', () => {
    expect(() => assertFresh(token(undefined), 'orders', NOW)).not.toThrow();
  });

  it("uses the smaller of 10 s and a quarter of another token's lifetime as margin for subjectToken: NAME, at least 1 s", () => {
    const t = (lifetimeMs: number) => ({ accessToken: 'a', tokenType: 'Bearer', obtainedAt: NOW, expiresAt: NOW + lifetimeMs });
    expect(subjectMarginMs(t(3_600_000))).toBe(10_000);
    expect(subjectMarginMs(t(8_000))).toBe(2_000);
    expect(subjectMarginMs(t(2_000))).toBe(1_000);
  });
});

describe('readFederatedToken: the file, read fresh for every grant', () => {
  it('follows a kubelet-style ..data swap: each read returns the file as it is now', async () => {
    const vol = new ProjectedVolume(join(dir, 'vol'));
    vol.write(jwt({ ...claims, jti: 'first' }));
    const read = () => readFederatedToken({ tokenName: 'orders', kind: 'client_assertion', path: vol.path, now: NOW, requireJwt: true });
    expect((await read()).claims?.jti).toBe('first');
    vol.write(jwt({ ...claims, jti: 'second' }));
    expect((await read()).claims?.jti).toBe('second');
  });

  it('refuses a file that is not a JWT, or holds more than one token, as a config error naming field and path, never the content', async () => {
    const notJwt = join(dir, 'opaque');
    writeFileSync(notJwt, 'opaque-credential-value\n');
    const err = await readFederatedToken({ tokenName: 'orders', kind: 'assertion', path: notJwt, now: NOW, requireJwt: true }).catch((e: unknown) => e as TokendError);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID', message: `tokens.orders.assertionFile: file ${notJwt} does not hold a JWT (the assertion must be one)` });
    // A subject token may be opaque.
    await expect(readFederatedToken({ tokenName: 'orders', kind: 'subject_token', path: notJwt, now: NOW, requireJwt: false })).resolves.toMatchObject({ claims: undefined });

    const two = join(dir, 'two');
    writeFileSync(two, `${jwt(claims)} ${jwt(claims)}`);
    const err2 = await readFederatedToken({ tokenName: 'orders', kind: 'client_assertion', path: two, now: NOW, requireJwt: true }).catch((e: unknown) => e as TokendError);
    expect(err2).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((err2 as TokendError).message).toContain('does not hold a single token');
    expect((err2 as TokendError).message).not.toContain(jwt(claims).slice(0, 20));
  });

  it('tells onRead about the token before judging its expiry, so the gauge shows an expired file too', async () => {
    const path = join(dir, 'expired');
    writeFileSync(path, jwt({ ...claims, exp: NOW / 1000 - 5 }));
    const seen: Array<number | undefined> = [];
    await expect(
      readFederatedToken({ tokenName: 'orders', kind: 'client_assertion', path, now: NOW, requireJwt: true, onRead: (t) => seen.push(t.claims?.expMs) }),
    ).rejects.toMatchObject({ reason: 'client_assertion_expired' });
    expect(seen).toEqual([NOW - 5_000]);
  });
});

describe('AssertionMetrics: seconds until each federated credential expires, computed at scrape time', () => {
  it('falls with the clock, reads 0 once expired, and drops a series whose credential has no exp', async () => {
    const clock = new FakeClock(NOW);
    const registry = new Registry();
    const m = AssertionMetrics.on(registry, clock);
    m.observe('orders', 'client_assertion', NOW + 600_000);
    m.observe('batch', 'assertion', NOW + 300_000);
    expect(await registry.metrics()).toContain('tokend_client_assertion_expiry_seconds{token="orders"} 600');
    expect(await registry.metrics()).toContain('tokend_federated_token_expiry_seconds{token="batch",kind="assertion"} 300');
    await clock.advance(400_000);
    expect(await registry.metrics()).toContain('tokend_client_assertion_expiry_seconds{token="orders"} 200');
    expect(await registry.metrics()).toContain('tokend_federated_token_expiry_seconds{token="batch",kind="assertion"} 0');
    m.observe('batch', 'assertion', undefined);
    expect(await registry.metrics()).not.toContain('token="batch"');
  });
});
