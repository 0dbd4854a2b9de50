import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken, until } from '../support/daemon.js';
import { startTcpFaultProxy, type CutPoint, type TcpFaultProxy } from '../support/fault-proxy.js';
import { startFleet, type Fleet, type Replica } from '../support/fleet.js';

/**
 * Issue 9 item 1, end to end: two replicas share a rotating refresh token; one of them reaches
 * Redis through a TCP proxy that cuts its connection while it commits a rotation, after the script
 * ran (the reply is lost) or before it ran. The rotation must not be lost: no refresh token is
 * presented twice (the IdP, oidc-provider with reuse detection, would answer invalid_grant and
 * revoke the grant), and every replica stays ready.
 *
 * TOKEND_CUTS=20 runs twenty cuts of each kind (the figure in the closing note); the suite runs one.
 */
const CUTS = Number(process.env.TOKEND_CUTS ?? 1);

describe('replicas sharing Redis: a commit cut by the network', () => {
  let f: Fleet;
  let proxy: TcpFaultProxy;
  let cutReplica: Replica;
  beforeAll(async () => {
    f = await startFleet({ replicas: 1, ttlSec: 6 });
    proxy = await startTcpFaultProxy(f.redis.port);
    cutReplica = await f.startReplica(proxy.url());
    await f.allReady();
  });
  afterAll(async () => {
    await proxy?.close();
    await f?.close();
  });

  it.each<CutPoint>(['after-forward', 'before-forward'])(
    `loses no rotation when the commit is cut (%s), ${CUTS} times`,
    async (point) => {
      const results: Array<{ invalidGrant: number; ready: number }> = [];
      for (let i = 0; i < CUTS; i++) {
        const grants = f.grants();
        // The commit is the write that carries the new access token's metadata.
        await proxy.cutNext((chunk) => chunk.includes("access_token"), point);
        // The next cycle, whoever runs it, must present the rotated token, not the consumed one.
        await until(() => f.grants() >= grants + 2, 'the cut rotation followed by another grant', 30_000, 50);
        await f.allReady(20_000);
        const answers = await Promise.all(f.live().map((r) => getToken(r.url, 'shared')));
        results.push({ invalidGrant: f.invalidGrants(), ready: answers.filter((a) => a.status === 200).length });
      }
      if (process.env.TOKEND_CUTS) console.log(JSON.stringify({ point, cuts: CUTS, reuse: f.invalidGrants(), readyAtEnd: results.at(-1)?.ready, replicas: f.live().length }));
      expect(f.invalidGrants()).toBe(0);
      expect(results.every((r) => r.ready === 2)).toBe(true);
      expect(cutReplica.proc.events('store.write_failed').length + cutReplica.proc.events('store.restored').length).toBeGreaterThan(0);
    },
    CUTS * 40_000 + 20_000,
  );
});
