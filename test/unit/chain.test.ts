import { describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { CONSUMED_MEMORY, NO_CHAIN, RefreshTokenChain } from '../../src/refresh/chain.js';
import type { Credentials } from '../../src/refresh/credentials.js';
import { sha256Hex } from '../../src/util/hash.js';

const SEED1 = 'seed-1';
const SEED2 = 'seed-2';

function creds(seed: string | undefined, seedError?: unknown): Credentials {
  return { seed, seedHash: seed === undefined ? undefined : sha256Hex(seed), seedError, fingerprint: 'fp' };
}

describe('RefreshTokenChain.pick', () => {
  it('presents the seed when nothing is stored', () => {
    const chain = new RefreshTokenChain('orders');
    expect(chain.pick({}, creds(SEED1))).toEqual({ rt: SEED1, seedHash: sha256Hex(SEED1), seedWon: false });
  });

  it('presents the stored token when it descends from the configured seed', () => {
    const chain = new RefreshTokenChain('orders');
    const pick = chain.pick({ refreshToken: 'rt-5', seedHash: sha256Hex(SEED1) }, creds(SEED1));
    expect(pick).toEqual({ rt: 'rt-5', seedHash: sha256Hex(SEED1), seedWon: false });
  });

  it('lets a new seed win over a stored chain of another seed', () => {
    const chain = new RefreshTokenChain('orders');
    const pick = chain.pick({ refreshToken: 'rt-5', seedHash: sha256Hex(SEED1) }, creds(SEED2));
    expect(pick).toEqual({ rt: SEED2, seedHash: sha256Hex(SEED2), seedWon: true });
  });

  it('keeps the stored chain while the seed file cannot be read (mid-remount)', () => {
    const chain = new RefreshTokenChain('orders');
    const pick = chain.pick({ refreshToken: 'rt-5', seedHash: sha256Hex(SEED1) }, { ...creds(undefined, new Error('EACCES')), seedHash: sha256Hex(SEED1) });
    expect(pick.rt).toBe('rt-5');
  });

  it('presents its own newer token when the store still holds one it saw consumed (a commit that did not land)', () => {
    const chain = new RefreshTokenChain('orders');
    chain.rotated('rt-1', 'rt-2', sha256Hex(SEED1));
    expect(chain.pick({ refreshToken: 'rt-1', seedHash: sha256Hex(SEED1) }, creds(SEED1)).rt).toBe('rt-2');
  });

  it('presents its own token when the store lost the refresh token (FLUSHALL), never the consumed seed', () => {
    const chain = new RefreshTokenChain('orders');
    chain.rotated(SEED1, 'rt-1', sha256Hex(SEED1));
    expect(chain.pick({}, creds(SEED1)).rt).toBe('rt-1');
  });

  it('refuses, without asking the IdP, when the only token left is consumed', () => {
    const chain = new RefreshTokenChain('orders');
    chain.rotated(SEED1, 'rt-1', sha256Hex(SEED1));
    chain.revoke();
    const err = ((): unknown => {
      try {
        chain.pick({}, creds(SEED1));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(hasCode(err, 'GRANT_PERMANENT')).toBe(true);
    expect((err as { reason?: string }).reason).toBe('refresh token already used');
  });

  it('refuses with "no refresh token" when there is neither a seed nor a stored token', () => {
    const chain = new RefreshTokenChain('orders');
    expect(() => chain.pick({}, creds(undefined))).toThrow(expect.objectContaining({ code: 'GRANT_PERMANENT', reason: 'no refresh token' }));
  });
});

describe('RefreshTokenChain: consumption', () => {
  it('marks the presented token consumed when the IdP rotated, and not when it did not', () => {
    const chain = new RefreshTokenChain('orders');
    chain.rotated('rt-1', 'rt-1', undefined);
    expect(chain.isConsumed('rt-1')).toBe(false);
    chain.rotated('rt-1', 'rt-2', undefined);
    expect(chain.isConsumed('rt-1')).toBe(true);
    expect(chain.current).toBe('rt-2');
  });

  it('follows another process\'s commits as a linear chain: the previous token is consumed', () => {
    const chain = new RefreshTokenChain('orders');
    const seedHash = sha256Hex(SEED1);
    chain.observe({ refreshToken: 'rt-1', seedHash }, seedHash);
    chain.observe({ refreshToken: 'rt-2', seedHash }, seedHash);
    expect(chain.current).toBe('rt-2');
    expect(chain.isConsumed('rt-1')).toBe(true);
    // An older token seen again (a stale write-back elsewhere) does not move the chain back.
    chain.observe({ refreshToken: 'rt-1', seedHash }, seedHash);
    expect(chain.current).toBe('rt-2');
  });

  it('ignores a chain of another seed until its own seed says so', () => {
    const chain = new RefreshTokenChain('orders');
    chain.observe({ refreshToken: 'rt-other', seedHash: sha256Hex(SEED2) }, sha256Hex(SEED1));
    expect(chain.current).toBeUndefined();
  });

  it('knows when the store lacks its token: lost, or still the consumed predecessor', () => {
    const chain = new RefreshTokenChain('orders');
    chain.rotated('rt-1', 'rt-2', undefined);
    expect(chain.storeLacks({})).toBe(true);
    expect(chain.storeLacks({ refreshToken: 'rt-1' })).toBe(true);
    expect(chain.storeLacks({ refreshToken: 'rt-2' })).toBe(false);
    expect(chain.storeLacks({ refreshToken: 'rt-9' })).toBe(false); // someone else is ahead
    expect(chain.storeLacks({ revoked: true })).toBe(false);
  });

  it(`remembers the newest ${CONSUMED_MEMORY} consumed tokens`, () => {
    const chain = new RefreshTokenChain('orders');
    for (let i = 0; i <= CONSUMED_MEMORY; i++) chain.rotated(`rt-${i}`, `rt-${i + 1}`, undefined);
    expect(chain.consumed.size).toBe(CONSUMED_MEMORY);
    expect(chain.isConsumed('rt-0')).toBe(false); // the oldest was forgotten
    expect(chain.isConsumed(`rt-${CONSUMED_MEMORY}`)).toBe(true);
  });
});

describe('NO_CHAIN', () => {
  it('presents nothing and never lacks anything', () => {
    expect(NO_CHAIN.presents).toBe(false);
    expect(NO_CHAIN.pick({ refreshToken: 'x' }, creds(SEED1))).toEqual({ rt: undefined, seedHash: undefined, seedWon: false });
    expect(NO_CHAIN.storeLacks({})).toBe(false);
  });
});
