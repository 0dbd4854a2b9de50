import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { freePort, getToken, until, TokendProcess, type LogLine } from '../support/daemon.js';

// The safety margin of a 12 s token (3 s) holds the unusable last second, a dead leader's 1 s
// lease and a grant, with a second to spare on a loaded machine.
const TTL_SEC = 12;
const PREFIX = 'fleet:';

interface Replica {
  proc: TokendProcess;
  url: string;
}

/**
 * Four tokend processes sharing one Redis and one rotating refresh token, against a real IdP.
 * A single instance refreshes once per ~0.65–0.75 of the lifetime; the fleet must do the same.
 */
describe('replicas sharing Redis', () => {
  let w: World;
  let redis: RedisHandle;
  let configPath: string;
  const replicas: Replica[] = [];

  const startReplica = async (): Promise<Replica> => {
    const port = await freePort();
    const proc = new TokendProcess(['run', '--config', configPath, '--listen', `127.0.0.1:${port}`]);
    const r = { proc, url: `http://127.0.0.1:${port}` };
    replicas.push(r);
    return r;
  };
  const live = (): Replica[] => replicas.filter((r) => r.proc.child.exitCode === null && r.proc.child.signalCode === null);
  const grants = (): number => w.idp.stats().grants.refresh_token ?? 0;
  const invalidGrants = (): number => w.idp.stats().errors.invalid_grant ?? 0;

  /**
   * Asks every live replica for the token every ~100 ms for `ms`, or, with `untilGrants`, until
   * the IdP has served that many more grants and every replica has answered once more (at most
   * `ms`). Every answer must be a valid token.
   */
  const everyReplicaServes = async (ms: number, untilGrants?: number): Promise<number> => {
    const deadline = Date.now() + ms;
    const target = untilGrants === undefined ? undefined : grants() + untilGrants;
    let answers = 0;
    let done = false;
    while (!done && Date.now() < deadline) {
      if (target !== undefined && grants() >= target) done = true;
      for (const r of live()) {
        const res = await getToken(r.url, 'shared');
        expect(res.status, `replica ${r.url} answered ${res.status}: ${res.body}\n${r.proc.lines.slice(-12).map((l) => JSON.stringify(l)).join('\n')}`).toBe(200);
        const body = res.json();
        expect(body.expires_in as number).toBeGreaterThan(0);
        answers++;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return answers;
  };

  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: TTL_SEC });
    redis = await startRedis();
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file('seed', seed + '\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    configPath = (
      await w.config(
        [{ name: 'shared', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
        { store: `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "${PREFIX}"\n  lease: 1s\n`, top: 'logLevel: debug' },
      )
    ).path;
    for (let i = 0; i < 4; i++) await startReplica();
    await Promise.all(replicas.map((r) => until(async () => (await fetch(`${r.url}/readyz`).catch(() => undefined))?.status === 200, `replica ${r.url} ready`, 20_000)));
  });
  afterAll(async () => {
    if (process.env.TOKEND_TEST_DUMP) for (const r of replicas) console.log(r.url, r.proc.lines.filter((l) => l.event && l.event !== 'lease.acquired').map((l) => `${l.time} ${l.event} ${l.msg} ${JSON.stringify(l.error ?? '')}`).join('\n'));
    await Promise.all(replicas.map((r) => r.proc.kill9()));
    await redis?.stop();
    await w?.close();
  });

  it('serves a valid token from every replica through several refresh cycles, with one grant per cycle and no invalid_grant', async () => {
    const g0 = grants();
    const t0 = Date.now();
    const answers = await everyReplicaServes(18_000);
    const elapsed = Date.now() - t0;
    const fleetGrants = grants() - g0;
    expect(answers).toBeGreaterThan(100);
    // A single instance: one grant per 0.65–0.75 of the lifetime. Four uncoordinated replicas would do four times that.
    const singleInstanceMax = Math.ceil(elapsed / (0.65 * TTL_SEC * 1000)) + 1;
    expect(fleetGrants).toBeGreaterThanOrEqual(Math.floor(elapsed / (0.75 * TTL_SEC * 1000)) - 1);
    expect(fleetGrants).toBeLessThanOrEqual(singleInstanceMax);
    expect(invalidGrants()).toBe(0);

    // Key layout: raw token with a TTL no longer than its lifetime, metadata JSON, refresh-token state.
    // One snapshot of the keys and the endpoint: a refresh may land between two reads, so read
    // again (for at most 3 s) until none did; the assertions are on that snapshot.
    const c = redis.client();
    const snap = await until(
      async () => {
        const raw = await c.get(`${PREFIX}shared`);
        const pttl = await c.pttl(`${PREFIX}shared`);
        const metaJson = await c.get(`${PREFIX}shared:meta`);
        const served = (await getToken(replicas[0]!.url, 'shared')).json();
        // A replica adopts a new commit within milliseconds (pub/sub): retry rather than race it.
        const settled = served.access_token === raw && (await c.get(`${PREFIX}shared`)) === raw;
        return settled ? { raw, pttl, metaJson, served } : undefined;
      },
      'a snapshot without a refresh in between',
      3_000,
    );
    expect(snap.raw).toBe(snap.served.access_token);
    expect(snap.pttl).toBeGreaterThan(0);
    expect(snap.pttl).toBeLessThanOrEqual(TTL_SEC * 1000);
    const meta = JSON.parse(snap.metaJson!) as Record<string, unknown>;
    expect(meta.expires_at).toBe(snap.served.expires_at);
    expect(await c.exists(`${PREFIX}shared:state`)).toBe(1);
  });

  it('carries on when the replica holding the lease is killed with kill -9 mid-grant', async () => {
    // Hold the token endpoint so the next grant hangs with its lease held, then kill that replica.
    const before = new Map(live().map((r) => [r, r.proc.events('lease.acquired').length]));
    await w.proxy.setMode('hang', /^\/token$/);
    let leader: Replica | undefined;
    try {
      leader = await until(() => live().find((r) => r.proc.events('lease.acquired').length > (before.get(r) ?? 0)), 'a replica taking the lease', 10_000, 20);
      await leader.proc.kill9();
    } finally {
      await w.proxy.setMode('pass');
    }
    const g0 = grants();
    // The survivors take over within a lease period and keep serving.
    await everyReplicaServes(12_000, 1);
    expect(grants() - g0).toBeGreaterThanOrEqual(1);
    expect(invalidGrants()).toBe(0);
    expect(live()).toHaveLength(3);
    await startReplica();
  });

  it('keeps serving while Redis is killed and restarted empty, rewrites what it holds, and never reuses a refresh token', async () => {
    await until(
      async () => (await Promise.all(live().map(async (r) => (await fetch(`${r.url}/readyz`).catch(() => undefined))?.status === 200))).every(Boolean),
      'all ready',
      20_000,
    );
    await redis.kill9();
    try {
      // Shorter than a token lifetime: replicas serve what they hold.
      await everyReplicaServes(1_500);
    } finally {
      await redis.restart();
    }
    const c = redis.client();
    // The data is gone; the replicas write back the refresh token they hold.
    await until(async () => (await c.exists(`${PREFIX}shared:state`).catch(() => 0)) === 1, 'refresh-token state rewritten', 15_000);
    const g0 = grants();
    await everyReplicaServes(12_000, 1);
    expect(grants() - g0).toBeGreaterThanOrEqual(1);
    expect(invalidGrants()).toBe(0);
  });

  it('survives FLUSHALL: the refresh token is restored from a replica and nothing is lost', async () => {
    await redis.flushall();
    const c = redis.client();
    await until(async () => (await c.exists(`${PREFIX}shared:state`)) === 1, 'refresh-token state rewritten after FLUSHALL', 15_000);
    const g0 = grants();
    await everyReplicaServes(12_000, 1);
    expect(grants() - g0).toBeGreaterThanOrEqual(1);
    expect(invalidGrants()).toBe(0);
    // No replica reported a lost refresh token.
    const lost: LogLine[] = replicas.flatMap((r) => r.proc.events('token.refresh_token_lost'));
    expect(lost).toHaveLength(0);
  });
});
