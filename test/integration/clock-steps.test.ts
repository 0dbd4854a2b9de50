import { existsSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken, until } from '../support/daemon.js';
import { startWorld, type World } from '../support/world.js';

// libfaketime (Debian package `faketime`; .ci/run installs it) steps tokend's wall clock while it
// runs: FAKETIME_TIMESTAMP_FILE is re-read on every call (FAKETIME_NO_CACHE), and the monotonic
// clock is left alone (DONT_FAKE_MONOTONIC), as an NTP step or an operator's `date -s` would.
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1'].find((p) => existsSync(p));
const TTL_SEC = 4;

interface Seen {
  at: number;
  expiresIn: number;
  exp: number;
}

/** The exp claim of a JWT access token (the IdP's own clock decides expiry). */
function expOf(jwt: string): number {
  return (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp;
}

describe.skipIf(!LIBFAKETIME)('wall-clock steps under libfaketime', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: TTL_SEC, jwtAccessTokenAudience: 'https://api.example' });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('never serves a token the IdP considers expired, nor reports more life than it has, when the wall clock is stepped back or forward an hour', async () => {
    const offset = w.file('faketime-offset', '+0\n', 0o644);
    const secret = w.file('secret', 'cc-secret-value-1f2e\n');
    const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
      store: 'store:\n  type: memory\n',
    });
    const p = w.start(path, { LD_PRELOAD: LIBFAKETIME!, FAKETIME_TIMESTAMP_FILE: offset, FAKETIME_NO_CACHE: '1', DONT_FAKE_MONOTONIC: '1' });
    await p.waitForEvent('token.acquired', { token: 'orders' });

    const poll = async (ms: number): Promise<Seen[]> => {
      const seen: Seen[] = [];
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const res = await getToken(url, 'orders');
        const at = Date.now();
        if (res.status === 200) {
          const body = res.json();
          seen.push({ at, expiresIn: body.expires_in as number, exp: expOf(body.access_token as string) });
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return seen;
    };
    const check = (seen: Seen[]): void => {
      expect(seen.length).toBeGreaterThan(10);
      for (const s of seen) {
        // Valid by the IdP's clock when served, and never more life announced than the IdP gave it.
        expect(s.at).toBeLessThan(s.exp * 1000);
        expect(s.expiresIn).toBeLessThanOrEqual(Math.ceil(s.exp - s.at / 1000));
        expect(s.expiresIn).toBeLessThanOrEqual(TTL_SEC);
      }
    };

    writeFileSync(offset, '-1h\n');
    const back = await poll(2.2 * TTL_SEC * 1000);
    check(back);
    // Refreshing went on: more than one token served while the clock was an hour behind.
    expect(new Set(back.map((s) => s.exp)).size).toBeGreaterThanOrEqual(2);

    writeFileSync(offset, '+1h\n');
    const forward = await poll(2.2 * TTL_SEC * 1000);
    check(forward);
    expect(new Set(forward.map((s) => s.exp)).size).toBeGreaterThanOrEqual(2);
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, 'ready after the steps', 10_000);
    expect(w.idp.stats().errors).toEqual({});
    expect((await p.stop()).code).toBe(0);
  }, 60_000);
});
