import { expect } from 'vitest';
import { startWorld, type World } from './world.js';
import { startRedis, type RedisHandle } from './redis.js';
import { freePort, getToken, until, TokendProcess } from './daemon.js';

/** One tokend process of a fleet. */
export interface Replica {
  proc: TokendProcess;
  url: string;
}

/**
 * Several tokend processes (the built CLI) sharing one Redis and one rotating refresh token
 * (token `shared`), against a real IdP behind a fault proxy. Each test file starts its own, so
 * files run in parallel.
 */
export interface Fleet {
  w: World;
  redis: RedisHandle;
  prefix: string;
  ttlSec: number;
  replicas: Replica[];
  seedFile: string;
  startReplica(): Promise<Replica>;
  live(): Replica[];
  /** refresh_token grants the IdP has served. */
  grants(): number;
  /** invalid_grant answers the IdP has given (reuse of a consumed refresh token among them). */
  invalidGrants(): number;
  /**
   * Asks every live replica for the token every ~100 ms for `ms`, or, with `untilGrants`, until the
   * IdP has served that many more grants (at most `ms`). Every answer must be a valid token.
   */
  everyReplicaServes(ms: number, untilGrants?: number): Promise<number>;
  allReady(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

// The safety margin of a 12 s token (3 s) holds the unusable last second, a dead leader's 1 s
// lease and a grant, with a second to spare on a loaded machine.
export async function startFleet(opts: { replicas?: number; ttlSec?: number; prefix?: string } = {}): Promise<Fleet> {
  const ttlSec = opts.ttlSec ?? 12;
  const prefix = opts.prefix ?? 'fleet:';
  const w = await startWorld({ accessTokenTtlSec: ttlSec });
  const redis = await startRedis();
  const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
  const seedFile = w.file('seed', seed + '\n');
  const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
  const configPath = (
    await w.config(
      [{ name: 'shared', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "${prefix}"\n  lease: 1s\n`, top: 'logLevel: debug' },
    )
  ).path;
  const replicas: Replica[] = [];
  const fleet: Fleet = {
    w,
    redis,
    prefix,
    ttlSec,
    replicas,
    seedFile,
    async startReplica() {
      const port = await freePort();
      const proc = new TokendProcess(['run', '--config', configPath, '--listen', `127.0.0.1:${port}`]);
      const r = { proc, url: `http://127.0.0.1:${port}` };
      replicas.push(r);
      return r;
    },
    live: () => replicas.filter((r) => r.proc.child.exitCode === null && r.proc.child.signalCode === null),
    grants: () => w.idp.stats().grants.refresh_token ?? 0,
    invalidGrants: () => w.idp.stats().errors.invalid_grant ?? 0,
    async everyReplicaServes(ms, untilGrants) {
      const deadline = Date.now() + ms;
      const target = untilGrants === undefined ? undefined : fleet.grants() + untilGrants;
      let answers = 0;
      let done = false;
      while (!done && Date.now() < deadline) {
        if (target !== undefined && fleet.grants() >= target) done = true;
        for (const r of fleet.live()) {
          const res = await getToken(r.url, 'shared');
          expect(res.status, `replica ${r.url} answered ${res.status}: ${res.body}\n${r.proc.lines.slice(-12).map((l) => JSON.stringify(l)).join('\n')}`).toBe(200);
          expect(res.json().expires_in as number).toBeGreaterThan(0);
          answers++;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return answers;
    },
    async allReady(timeoutMs = 20_000) {
      await until(
        async () => (await Promise.all(fleet.live().map(async (r) => (await fetch(`${r.url}/readyz`).catch(() => undefined))?.status === 200))).every(Boolean),
        'every replica ready',
        timeoutMs,
      );
    },
    async close() {
      if (process.env.TOKEND_TEST_DUMP) {
        for (const r of replicas) console.log(r.url, r.proc.lines.filter((l) => l.event && l.event !== 'lease.acquired').map((l) => `${l.time} ${l.event} ${l.msg} ${JSON.stringify(l.error ?? '')}`).join('\n'));
      }
      await Promise.all(replicas.map((r) => r.proc.kill9()));
      await redis.stop();
      await w.close();
    },
  };
  for (let i = 0; i < (opts.replicas ?? 4); i++) await fleet.startReplica();
  await fleet.allReady();
  return fleet;
}
