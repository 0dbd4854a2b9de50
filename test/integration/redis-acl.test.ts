/**
 * The Redis overlay's least-privilege setup, run for real: the ACL file is rendered by the
 * overlay's own init script from its template and the passwords projected from the Secrets,
 * loaded by a real redis-server started with the overlay's arguments; two built tokend replicas
 * run the overlay's config as ACL user `tokend` against the dev IdP; the application's read-only
 * user reads its token (with ioredis, and with the overlay's own redis-cli script) and is refused
 * everything else.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { parse as parseYaml, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../support/idp.js';
import { ensureBuiltCli, freePort, getToken, runCli, scratch, TokendProcess, until } from '../support/daemon.js';
import { find, K8S, render, type Obj } from '../support/k8s.js';
import { aclUsers, podSpec } from '../support/k8s-tokend.js';

const ADMIN = { user: 'acl-test-admin', password: randomBytes(12).toString('hex') };

interface Overlay {
  objects: Obj[];
  script: string;
  template: string;
  initEnv: Record<string, string>;
  redisArgs: string[];
  app: Obj;
  config: Obj;
}

function readOverlay(): Overlay {
  const objects = render(join(K8S, 'overlays/redis'));
  const redisPod = podSpec(find(objects, 'Deployment', 'redis')[0]!);
  const init = (redisPod.initContainers as Obj[]).find((c) => c.name === 'acl')!;
  const acl = find(objects, 'ConfigMap').find((c) => c.data?.['render-acl.sh'] !== undefined)!;
  const appPod = podSpec(find(objects, 'Deployment', 'orders-app')[0]!);
  const configMap = find(objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('tokend-config'))!;
  return {
    objects,
    script: acl.data['render-acl.sh'],
    template: acl.data['users.acl.template'],
    initEnv: Object.fromEntries((init.env as Obj[]).map((e) => [e.name, e.value])),
    redisArgs: redisPod.containers[0].args as string[],
    app: (appPod.containers as Obj[]).find((c) => c.name === 'app')!,
    config: parseYaml(configMap.data['config.yaml']) as Obj,
  };
}

/** Runs the overlay's render-acl.sh as its init container would, with the given password files. */
function renderAcl(o: Overlay, dir: string, passwords: Record<string, string>): { status: number | null; stderr: string; file: string } {
  const files = join(dir, `passwords-${randomBytes(4).toString('hex')}`);
  mkdirSync(files, { mode: 0o700 });
  for (const [user, password] of Object.entries(passwords)) writeFileSync(join(files, user), password, { mode: 0o600 });
  writeFileSync(join(dir, 'users.acl.template'), o.template);
  writeFileSync(join(dir, 'render-acl.sh'), o.script);
  const file = join(dir, 'users.acl');
  const r = spawnSync('sh', [join(dir, 'render-acl.sh')], {
    env: { PATH: process.env.PATH, ACL_TEMPLATE: join(dir, 'users.acl.template'), ACL_PASSWORDS_DIR: files, ACL_FILE: file },
    encoding: 'utf8',
  });
  return { status: r.status, stderr: r.stderr, file };
}

/** redis-server with the overlay's arguments (ACL file swapped for ours), on a free loopback port. */
async function startRedisWith(args: readonly string[], aclFile: string, dir: string): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const own = args.slice(args[0] === 'redis-server' ? 1 : 0).map((a, i, all) => (all[i - 1] === '--aclfile' ? aclFile : a));
  const proc = spawn('redis-server', [...own, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no'], { stdio: 'ignore' });
  const admin = new Redis({ port, host: '127.0.0.1', username: ADMIN.user, password: ADMIN.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  admin.on('error', () => undefined);
  try {
    await until(async () => (await admin.connect().then(() => admin.ping(), () => undefined)) === 'PONG', 'redis-server with the ACL file', 5_000, 50);
  } finally {
    admin.disconnect();
  }
  return { port, proc };
}

/** ACL LOG entries (denied commands) of one user, as `reason object` strings. */
async function denied(admin: Redis, user: string): Promise<string[]> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  return entries
    .map((e) => Object.fromEntries(Array.from({ length: e.length / 2 }, (_, i) => [e[2 * i], e[2 * i + 1]])) as Record<string, unknown>)
    .filter((e) => e.username === user)
    .map((e) => `${e.reason} ${e.object}`)
    // ioredis sends CLIENT SETINFO at connect and ignores a refusal; Redis 7.0 (Debian's) has no
    // such subcommand to grant, 7.2 and later refuse it and log that here.
    .filter((e) => e !== 'command client|setinfo');
}

function client(port: number, username: string, password: string): Redis {
  const c = new Redis({ port, host: '127.0.0.1', username, password, maxRetriesPerRequest: 0 });
  c.on('error', () => undefined);
  return c;
}

describe('k8s overlays/redis: Redis ACL users, against a real redis-server and two tokend replicas', () => {
  const s = scratch('tokend-acl-');
  const passwords = { tokend: randomBytes(16).toString('hex'), app: randomBytes(16).toString('hex') };
  let o: Overlay;
  let idp: DevIdp;
  let redis: { port: number; proc: ChildProcess } | undefined;
  let configPath = '';
  const replicas: Array<{ proc: TokendProcess; url: string }> = [];
  const clients: Redis[] = [];
  let appUser = '';
  let prefix = '';

  beforeAll(async () => {
    expect(ensureBuiltCli()).toBe(true);
    o = readOverlay();
    const users = aclUsers(o.objects);
    const env = Object.fromEntries((o.app.env as Obj[]).map((e) => [e.name, e.value]));
    appUser = env.REDIS_USER;
    prefix = o.config.store.prefix;
    const tokendUser = decodeURIComponent(new URL(o.config.store.url).username);
    // The files the redis pod sees, named after the users, as the projected volume lays them out;
    // written with a trailing newline, as `echo pw > file` or kubectl --from-file leave one.
    const byUser: Record<string, string> = {};
    for (const [name, u] of users) if (u.secret) byUser[name] = `${name === tokendUser ? passwords.tokend : passwords.app}\n`;
    expect(Object.keys(byUser).sort()).toEqual([appUser, tokendUser].sort());
    const acl = renderAcl(o, s.dir, byUser);
    expect(acl.status, acl.stderr).toBe(0);
    // The test's own admin, to read ACL LOG; not part of the overlay.
    writeFileSync(acl.file, `${readFileSync(acl.file, 'utf8')}user ${ADMIN.user} on >${ADMIN.password} ~* &* +@all\n`);
    redis = await startRedisWith(o.redisArgs, acl.file, s.dir);

    idp = await startDevIdp({
      accessTokenTtlSec: 4,
      refreshTokenTtlSec: 3600,
      clients: [
        { clientId: 'orders-client', clientSecret: 'orders-secret-1', scope: 'orders:read orders:write' },
        { clientId: 'reports-client', clientSecret: 'reports-secret-1', scope: 'openid offline_access' },
      ],
    });
    // The overlay's config, with only addresses and file paths changed.
    const config = structuredClone(o.config);
    delete config.metricsListen;
    config.store.url = `redis://${tokendUser}@127.0.0.1:${redis.port}/0`;
    config.store.passwordFile = s.file('redis-password', `${passwords.tokend}\n`);
    for (const [name, t] of Object.entries(config.tokens as Record<string, Obj>)) {
      t.issuer = idp.issuer;
      t.clientSecretFile = s.file(`${name}-secret`, name === 'orders' ? 'orders-secret-1\n' : 'reports-secret-1\n');
      if (t.refreshTokenFile) t.refreshTokenFile = s.file(`${name}-seed`, `${await idp.mintRefreshToken('reports-client')}\n`);
    }
    configPath = s.file('tokend.yaml', stringify(config));
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      replicas.push({ proc: new TokendProcess(['run', '--config', configPath, '--listen', `127.0.0.1:${port}`]), url: `http://127.0.0.1:${port}` });
    }
    await Promise.all(replicas.map((r) => until(async () => (await fetch(`${r.url}/readyz`).catch(() => undefined))?.status === 200, `replica ${r.url} ready`, 20_000)));
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(replicas.map((r) => r.proc.kill9()));
    if (redis) {
      redis.proc.kill('SIGTERM');
      if (redis.proc.exitCode === null) await once(redis.proc, 'exit');
    }
    await idp?.close();
    s.cleanup();
  });

  const tokendUser = (): string => decodeURIComponent(new URL(o.config.store.url).username);
  const as = (user: string, password: string): Redis => {
    const c = client(redis!.port, user, password);
    clients.push(c);
    return c;
  };

  it('renders an ACL file with SHA-256 hashes and no password, and refuses to render with a password missing or empty', () => {
    const text = readFileSync(join(s.dir, 'users.acl'), 'utf8');
    expect(text).not.toContain(passwords.tokend);
    expect(text).not.toContain(passwords.app);
    expect(text).toMatch(/ #[0-9a-f]{64} /);
    expect(text).not.toMatch(/^#|\{\{/m);

    const missing = renderAcl(o, s.dir, { tokend: 'x' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain(`{{${appUser}}}`);
    const empty = renderAcl(o, s.dir, { tokend: 'x', [appUser]: '\n' });
    expect(empty.status).not.toBe(0);
    expect(empty.stderr).toContain(`the password of ACL user ${appUser} is empty`);
  });

  it("runs tokend as its own ACL user: two replicas obtain, refresh and share a rotating refresh token, and Redis refused none of their commands", async () => {
    // Several refresh cycles of the 4 s tokens, with pub/sub adoption between the replicas.
    await until(() => replicas.flatMap((r) => r.proc.events('token.refreshed', 'reports')).length >= 4, 'reports refreshed a few times', 20_000, 100);
    expect(replicas.some((r) => r.proc.events('token.refreshed', 'reports').some((l) => l.adopted === true))).toBe(true);
    for (const r of replicas) {
      for (const event of ['store.corrupt', 'store.write_failed', 'store.unavailable', 'token.refresh_token_lost', 'token.refresh_failed']) {
        expect(r.proc.events(event), `${r.url} ${event}`).toEqual([]);
      }
      expect(r.proc.output).not.toContain('NOPERM');
    }
    expect(idp.stats().errors).toEqual({});
    const admin = as(ADMIN.user, ADMIN.password);
    expect(await denied(admin, tokendUser())).toEqual([]);
    expect(await admin.exists(`${prefix}reports:state`)).toBe(1);
  });

  it('lets tokend touch nothing outside its prefix and channel', async () => {
    const tokend = as(tokendUser(), passwords.tokend);
    await expect(tokend.set('other:key', 'x')).rejects.toThrow(/NOPERM/);
    await expect(tokend.get('other:key')).rejects.toThrow(/NOPERM/);
    await expect(tokend.call('FLUSHALL')).rejects.toThrow(/NOPERM/);
    await expect(tokend.call('CONFIG', 'GET', 'dir')).rejects.toThrow(/NOPERM/);
    await expect(tokend.call('KEYS', '*')).rejects.toThrow(/NOPERM/);
    await expect(tokend.call('ACL', 'LIST')).rejects.toThrow(/NOPERM/);
    await expect(tokend.publish('other:events', 'x')).rejects.toThrow(/NOPERM/);
  });

  it('gives the application its token and metadata, and NOPERM on the refresh-token state, other keys, writes and the channel', async () => {
    const app = as(appUser, passwords.app);
    // ioredis' ready check ran INFO as this user (else it would have warned and skipped it).
    expect(String(await app.info('server'))).toContain('redis_version');
    const token = await until(() => app.get(`${prefix}orders`), 'the orders token in Redis');
    expect(token.length).toBeGreaterThan(10);
    const meta = JSON.parse((await app.get(`${prefix}orders:meta`))!) as Record<string, unknown>;
    expect(typeof meta.expires_at).toBe('number');
    expect(await app.pttl(`${prefix}orders`)).toBeGreaterThan(0);
    expect(await app.ttl(`${prefix}orders`)).toBeGreaterThanOrEqual(0);
    const served = (await getToken(replicas[0]!.url, 'orders')).json().access_token;
    expect([token, await app.get(`${prefix}orders`)]).toContain(served);

    for (const key of ['orders:state', 'orders:lease', 'orders:fence', 'reports', 'reports:meta', 'reports:state']) {
      await expect(app.get(`${prefix}${key}`), key).rejects.toThrow(/NOPERM/);
    }
    await expect(app.set(`${prefix}orders`, 'forged')).rejects.toThrow(/NOPERM/);
    await expect(app.del(`${prefix}orders`)).rejects.toThrow(/NOPERM/);
    await expect(app.pexpire(`${prefix}orders`, 1)).rejects.toThrow(/NOPERM/);
    await expect(app.call('KEYS', '*')).rejects.toThrow(/NOPERM/);
    await expect(app.call('EVAL', 'return 1', '0')).rejects.toThrow(/NOPERM/);
    await expect(app.publish(`${prefix}events`, '{}')).rejects.toThrow(/NOPERM/);
    const sub = as(appUser, passwords.app);
    await expect(sub.subscribe(`${prefix}events`)).rejects.toThrow(/NOPERM/);
  });

  it("runs the overlay's application script: it reads the token with redis-cli and says so without printing it, or says why not", async () => {
    const script = (o.app.command as string[]).at(-1)!;
    // `sleep 60` ends the loop after one round: a stand-in that stops the script's shell.
    const bin = join(s.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'sleep'), '#!/bin/sh\nkill -TERM "$PPID"\n');
    chmodSync(join(bin, 'sleep'), 0o755);
    const env = Object.fromEntries((o.app.env as Obj[]).map((e) => [e.name, e.value]));
    const runScript = (password: string): string => {
      const r = spawnSync('sh', ['-c', script], {
        env: { ...env, PATH: `${bin}:${process.env.PATH}`, REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis!.port), REDIS_PASSWORD_FILE: s.file(`app-pw-${password.length}`, `${password}\n`) },
        encoding: 'utf8',
        timeout: 10_000,
      });
      return r.stdout;
    };
    const out = runScript(passwords.app);
    const token = (await as(appUser, passwords.app).get(env.TOKEN_KEY))!;
    expect(out).toMatch(/token for orders available, \d+ bytes, \d+ s left/);
    expect(out).not.toContain(token);
    expect(runScript('wrong-password')).toMatch(/no token for orders: .*(WRONGPASS|NOAUTH)/);
  });

  it('lets tokend revoke as its own user: the removal script runs and leaves a tombstone', async () => {
    const r = await runCli(['revoke', 'reports', '--config', configPath]);
    expect(r.code, r.stderr).toBe(0);
    const admin = as(ADMIN.user, ADMIN.password);
    expect(JSON.parse((await admin.get(`${prefix}reports:state`))!)).toMatchObject({ revoked: true });
    expect(await admin.exists(`${prefix}reports`)).toBe(0);
    expect(await denied(admin, tokendUser())).toEqual([]);
  });
});
