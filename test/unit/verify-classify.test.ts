import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { errors } from 'jose';
import { reasonForJoseError } from '../../src/verify/classify.js';
import {
  INTROSPECTION_MAX_CACHE_MS,
  INTROSPECTION_NEGATIVE_CACHE_MS,
  introspectionCacheTtl,
  judgeIntrospection,
  tokenCacheKey,
} from '../../src/verify/introspection.js';
import type { VerifyIssuerConfig } from '../../src/config/types.js';

const claims = { sub: 'x' };

describe('reasonForJoseError maps every jose failure to the contract reason', () => {
  it.each([
    ['JWTExpired', new errors.JWTExpired('x', claims, 'exp', 'check_failed'), 'expired'],
    ['nbf check failed', new errors.JWTClaimValidationFailed('x', claims, 'nbf', 'check_failed'), 'not_yet_valid'],
    ['iat in the future', new errors.JWTClaimValidationFailed('x', claims, 'iat', 'check_failed'), 'not_yet_valid'],
    ['aud check failed', new errors.JWTClaimValidationFailed('x', claims, 'aud', 'check_failed'), 'audience'],
    ['aud missing', new errors.JWTClaimValidationFailed('x', claims, 'aud', 'missing'), 'audience'],
    ['iss check failed', new errors.JWTClaimValidationFailed('x', claims, 'iss', 'check_failed'), 'issuer'],
    ['iss missing', new errors.JWTClaimValidationFailed('x', claims, 'iss', 'missing'), 'issuer'],
    ['required claim missing', new errors.JWTClaimValidationFailed('x', claims, 'scope', 'missing'), 'missing_claim'],
    ['nbf not a number', new errors.JWTClaimValidationFailed('x', claims, 'nbf', 'invalid'), 'malformed'],
    ['typ mismatch', new errors.JWTClaimValidationFailed('x', claims, 'typ', 'check_failed'), 'malformed'],
    ['bad signature', new errors.JWSSignatureVerificationFailed(), 'signature'],
    ['alg not allowed', new errors.JOSEAlgNotAllowed('x'), 'algorithm'],
    ['no matching key', new errors.JWKSNoMatchingKey(), 'unknown_key'],
    ['several matching keys', new errors.JWKSMultipleMatchingKeys(), 'unknown_key'],
    ['invalid JWS', new errors.JWSInvalid('x'), 'malformed'],
    ['invalid JWT', new errors.JWTInvalid('x'), 'malformed'],
    ['unknown crit header', new errors.JOSENotSupported('x'), 'malformed'],
  ] as const)('%s → %s', (_what, err, reason) => {
    expect(reasonForJoseError(err)).toBe(reason);
  });

  it.each([
    ['a JWKS fetch timeout', new errors.JWKSTimeout()],
    ['a non-200 JWKS answer', new errors.JOSEError('Expected 200 OK')],
    ['an invalid JWKS document', new errors.JWKSInvalid('x')],
    ['a network failure', new TypeError('fetch failed')],
    ['a non-error', 'boom'],
  ])('gives no reason (no verdict) for %s', (_what, err) => {
    expect(reasonForJoseError(err)).toBeUndefined();
  });
});

const cfg: VerifyIssuerConfig = {
  issuer: 'https://idp.example',
  audience: ['orders-api'],
  clockToleranceSec: 30,
  requiredClaims: ['sub'],
  allowInsecureHttp: false,
};
const NOW = 1_750_000_000_000;

describe('judgeIntrospection', () => {
  it('accepts an active answer for this issuer and audience and drops the `active` member', () => {
    const out = judgeIntrospection({ active: true, iss: cfg.issuer, aud: ['x', 'orders-api'], sub: 's', exp: NOW / 1000 + 5 }, cfg, NOW);
    expect(out).toEqual({ active: true, issuer: cfg.issuer, claims: { iss: cfg.issuer, aud: ['x', 'orders-api'], sub: 's', exp: NOW / 1000 + 5 } });
  });

  it('applies the clock tolerance to exp and nbf', () => {
    const base = { active: true, aud: 'orders-api', sub: 's' };
    expect(judgeIntrospection({ ...base, exp: NOW / 1000 - 29 }, cfg, NOW).active).toBe(true);
    expect(judgeIntrospection({ ...base, exp: NOW / 1000 - 30 }, cfg, NOW)).toEqual({ active: false, reason: 'expired' });
    expect(judgeIntrospection({ ...base, nbf: NOW / 1000 + 30 }, cfg, NOW).active).toBe(true);
    expect(judgeIntrospection({ ...base, nbf: NOW / 1000 + 31 }, cfg, NOW)).toEqual({ active: false, reason: 'not_yet_valid' });
  });

  it('treats anything but `active: true` as inactive, and a non-numeric exp as malformed', () => {
    expect(judgeIntrospection({ active: 'true', aud: 'orders-api', sub: 's' }, cfg, NOW)).toEqual({ active: false, reason: 'inactive' });
    expect(judgeIntrospection({ active: true, aud: 'orders-api', sub: 's', exp: 'soon' }, cfg, NOW)).toEqual({
      active: false,
      reason: 'malformed',
    });
  });
});

describe('introspection cache lifetime', () => {
  const active = { active: true as const, issuer: 'i', claims: {} };

  it('is never past exp and never above the maximum (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -3600, max: 86_400 }), fc.integer({ min: 0, max: 2_000_000_000_000 }), (expIn, now) => {
        const expSec = Math.floor(now / 1000) + expIn;
        const ttl = introspectionCacheTtl(active, expSec, now);
        expect(ttl).toBeGreaterThanOrEqual(0);
        expect(ttl).toBeLessThanOrEqual(INTROSPECTION_MAX_CACHE_MS);
        expect(now + ttl).toBeLessThanOrEqual(Math.max(now, expSec * 1000));
      }),
    );
  });

  it('keeps a refusal for the short negative time, and a result without exp for the maximum', () => {
    expect(introspectionCacheTtl({ active: false, reason: 'inactive' }, undefined, NOW)).toBe(INTROSPECTION_NEGATIVE_CACHE_MS);
    expect(introspectionCacheTtl(active, undefined, NOW)).toBe(INTROSPECTION_MAX_CACHE_MS);
  });

  it('keys by a hash that does not contain the token', () => {
    const token = 'opaque-secret-token-value';
    const key = tokenCacheKey(token);
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key).not.toContain(token);
    expect(tokenCacheKey(token)).toBe(key);
    expect(tokenCacheKey(`${token}x`)).not.toBe(key);
  });
});
