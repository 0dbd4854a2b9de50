import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokendError } from '../../src/errors.js';
import { inspectTokenAnswer, jwtLifetimeMs, keepableRefreshToken, MAX_LIFETIME_MS, toGrantResult } from '../../src/oauth/answer.js';
import { rotatedRefreshTokenOf } from '../../src/oauth/source.js';
import { MAX_TOKEN_CHARS } from '../../src/token.js';

describe('inspectTokenAnswer: the raw JSON of a 200 token answer, before openid-client', () => {
  it('takes out a keepable new refresh token and the token_type, whatever else is wrong', () => {
    const { facts, body } = inspectTokenAnswer('{"token_type":"N_A","expires_in":-1,"refresh_token":"rt-2"}');
    expect(facts).toEqual({ refreshToken: 'rt-2', tokenType: 'N_A' });
    expect(body).toBe('{"token_type":"N_A","expires_in":-1,"refresh_token":"rt-2"}');
  });

  it('drops id_token and null members, and joins a scope sent as a list; leaves the rest as sent', () => {
    const { facts, body } = inspectTokenAnswer(
      JSON.stringify({ access_token: 'a', token_type: 'Bearer', id_token: 'x.y.z', refresh_token: null, expires_in: null, scope: ['a', 'b'] }),
    );
    expect(facts.refreshToken).toBeUndefined();
    expect(JSON.parse(body)).toEqual({ access_token: 'a', token_type: 'Bearer', scope: 'a b' });
  });

  it.each([
    ['not JSON', '{"access_token":"abc'],
    ['a JSON array', '["refresh_token"]'],
    ['a JSON string', '"refresh_token"'],
    ['null', 'null'],
  ])('hands %s on unchanged, with no facts', (_label, text) => {
    expect(inspectTokenAnswer(text)).toEqual({ facts: {}, body: text });
  });

  it.each([
    ['a number', 42, undefined],
    ['an empty string', '', undefined],
    ['control characters', 'rt\n', undefined],
    ['over 16 KiB', 'r'.repeat(MAX_TOKEN_CHARS + 1), undefined],
    ['a plain string', 'rt-ok', 'rt-ok'],
  ])('keeps a refresh token only when it can be presented again: %s', (_label, value, kept) => {
    expect(keepableRefreshToken(value)).toBe(kept);
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
    expect(toGrantResult({ access_token: 'abc', token_type: 'BEARER' as Lowercase<string>, expires_in: 1, scope: 'granted' }, at, cfg).token).toMatchObject({
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

  it('refuses a token type other than Bearer for good, naming it and carrying the new refresh token', () => {
    for (const type of ['N_A', 'mac', 'DPoP', 'dpop']) {
      let err: unknown;
      try {
        toGrantResult({ access_token: 'abc', token_type: type as Lowercase<string>, expires_in: 60, refresh_token: 'rt-next' }, at, cfg);
      } catch (e) {
        err = e;
      }
      expect((err as TokendError).code).toBe('GRANT_PERMANENT');
      expect((err as TokendError).reason).toBe('unsupported_token_type');
      expect((err as TokendError).message).toContain(`the IdP issued a token of type ${type}; tokend serves Bearer tokens`);
      expect(rotatedRefreshTokenOf(err)).toBe('rt-next');
    }
  });

  it('reads "refresh_token": null as no new refresh token', () => {
    expect(toGrantResult({ access_token: 'abc', token_type: 'bearer', expires_in: 60, refresh_token: null } as never, at, cfg).refreshToken).toBeUndefined();
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

  it('with both expires_in and a JWT exp, believes the shorter and reports a disagreement over 5 s', () => {
    const now = at / 1000;
    const life = (expiresIn: number, claims: Record<string, unknown>) =>
      toGrantResult({ access_token: jwt(claims), token_type: 'bearer', expires_in: expiresIn }, at, cfg);
    // The IdP that answered expires_in 3600 for JWTs expiring in 6 s.
    const short = life(3600, { iat: now, exp: now + 6 });
    expect(short.token.expiresAt).toBe(at + 6_000);
    expect(short.lifetimeDisagreement).toEqual({ expiresInMs: 3_600_000, jwtLifetimeMs: 6_000 });
    // The JWT claims longer than expires_in: expires_in wins, still reported.
    const long = life(30, { iat: now, exp: now + 600 });
    expect(long.token.expiresAt).toBe(at + 30_000);
    expect(long.lifetimeDisagreement).toEqual({ expiresInMs: 30_000, jwtLifetimeMs: 600_000 });
    // Agreement within 5 s (here: exp - now, no iat, 3 s apart): the shorter, nothing reported.
    const close = life(60, { exp: now + 57 });
    expect(close.token.expiresAt).toBe(at + 57_000);
    expect(close.lifetimeDisagreement).toBeUndefined();
    expect(life(60, { iat: now - 10, exp: now + 50 }).lifetimeDisagreement).toBeUndefined();
    // exp - iat, not exp - now: the IdP's clock an hour ahead changes nothing.
    expect(life(60, { iat: now + 3600, exp: now + 3660 }).token.expiresAt).toBe(at + 60_000);
    // An opaque token: expires_in alone.
    expect(toGrantResult({ access_token: 'opaque', token_type: 'bearer', expires_in: 3600 }, at, cfg).lifetimeDisagreement).toBeUndefined();
  });

  it('refuses a JWT past its exp even when expires_in says otherwise', () => {
    expectUnusable({ access_token: jwt({ exp: at / 1000 - 5 }), token_type: 'bearer', expires_in: 3600 });
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
