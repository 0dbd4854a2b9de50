/**
 * The newcomer's tools, run as a newcomer would: `npm run demo` (file store), `DEMO_STORE=redis
 * npm run demo` (two replicas on a private redis-server, one grant per refresh cycle), the same
 * without redis-server on the PATH, the demo piped through pino-pretty, and `npm run dev-idp`
 * whose printed config runs tokend as it is.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse as parseYaml, stringify } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli, freePort, getToken, scratch, TokendProcess, until, type LogLine } from '../support/daemon.js';
import { ROOT } from '../support/k8s.js';

const DEMO = join(ROOT, 'build/dev/demo.js');
const DEV_IDP = join(ROOT, 'build/dev/dev-idp.js');

/** Compiles dev/ (tsconfig.dev.json) afresh: `npm test` builds src only. Type errors still emit. */
function buildDev(): void {
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.dev.json')], { stdio: 'ignore' });
  } catch {
    // Checked below.
  }
  expect(existsSync(DEMO) && existsSync(DEV_IDP), 'build/dev/demo.js and dev-idp.js').toBe(true);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function runDemo(env: Record<string, string>, timeoutMs = 30_000): Promise<Run> {
  const child = spawn(process.execPath, [DEMO], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function jsonLines(text: string): LogLine[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });
}

beforeAll(() => {
  expect(ensureBuiltCli()).toBe(true);
  buildDev();
}, 60_000);

describe('npm run demo', () => {
  it('runs the dev IdP and tokend with the file store, both tokens refreshing, and cleans up after itself', async () => {
    const r = await runDemo({ DEMO_SECONDS: '5', DEMO_TOKEN_TTL: '3', DEMO_LISTEN: `127.0.0.1:${await freePort()}` });
    expect(r.code, r.stderr).toBe(0);
    const work = /tokend config:\s+(\S+)\/tokend\.yaml/.exec(r.stderr)?.[1];
    expect(r.stderr).toContain('token files:');
    const lines = jsonLines(r.stdout);
    for (const token of ['orders', 'inventory']) {
      expect(lines.some((l) => l.event === 'token.refreshed' && l.token === token), token).toBe(true);
    }
    expect(r.stderr).toMatch(/IdP served: \{.*"refresh_token":\d+.*\}; errors: \{\}/);
    expect(existsSync(work!)).toBe(false);
  });

  it('with DEMO_STORE=redis runs two replicas on a private redis-server: each new token granted once and adopted by the other replica', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const r = await runDemo({ DEMO_STORE: 'redis', DEMO_SECONDS: '9', DEMO_TOKEN_TTL: '3', DEMO_LISTEN: `127.0.0.1:${a}`, DEMO_LISTEN2: `127.0.0.1:${b}` });
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(new Set(lines.map((l) => l.replica))).toEqual(new Set([1, 2]));
    const inventory = lines.filter((l) => l.token === 'inventory' && (l.event === 'token.refreshed' || l.event === 'token.acquired'));
    const granted = inventory.filter((l) => l.adopted === false);
    expect(granted.length).toBeGreaterThanOrEqual(3);
    // One grant per new token: every token (by expiry) was granted by exactly one replica, and the
    // IdP saw exactly those refresh_token grants, none refused.
    const byExpiry = new Map<unknown, number>();
    for (const l of granted) byExpiry.set(l.expires_at, (byExpiry.get(l.expires_at) ?? 0) + 1);
    expect([...byExpiry.values()].every((n) => n === 1)).toBe(true);
    expect(inventory.filter((l) => l.adopted === true).length).toBeGreaterThanOrEqual(granted.length - 1);
    const served = JSON.parse(/IdP served: (\{.*?\}); errors: (\{.*\})/.exec(r.stderr)![1]!) as Record<string, number>;
    expect(served.refresh_token).toBe(granted.length);
    expect(r.stderr).toMatch(/errors: \{\}/);
    expect(r.stderr).toMatch(/inventory \(rotating refresh token\): \d+ new tokens granted by one replica, \d+ adopted by the other/);
    // The demo's redis-server is gone.
    const port = Number(/redis:\s+redis:\/\/127\.0\.0\.1:(\d+)/.exec(r.stderr)![1]);
    expect(await refused(port)).toBe(true);
  });

  it('with DEMO_STORE=redis and no redis-server on the PATH, says so and what to install, and starts nothing', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'tokend-nopath-'));
    try {
      const r = await runDemo({ DEMO_STORE: 'redis', PATH: empty, DEMO_SECONDS: '30' }, 15_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('DEMO_STORE=redis needs redis-server on the PATH');
      expect(r.stderr).toContain('apt-get install redis-server');
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toContain('dev identity provider');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('pretty-prints through pino-pretty (`npm run demo | npx pino-pretty`)', async () => {
    const demo = spawn(process.execPath, [DEMO], {
      env: { ...process.env, DEMO_SECONDS: '4', DEMO_TOKEN_TTL: '3', DEMO_LISTEN: `127.0.0.1:${await freePort()}` },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const pretty = spawn(join(ROOT, 'node_modules/.bin/pino-pretty'), ['--no-colorize'], { stdio: ['pipe', 'pipe', 'inherit'] });
    demo.stdout.pipe(pretty.stdin);
    let out = '';
    pretty.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await once(pretty, 'exit');
    expect(out).toMatch(/^\[[\d:.]+\] INFO: token refreshed$/m);
    expect(out).toMatch(/^\s+event: "token.refreshed"$/m);
    expect(out).not.toContain('{"level"');
  });
});

describe('npm run dev-idp', () => {
  let idp: ChildProcess | undefined;

  it('prints its issuer, clients, secrets, a fresh seed and a config that tokend runs as printed; Enter prints another seed', async () => {
    const s = scratch('tokend-dev-idp-');
    let tokend: TokendProcess | undefined;
    try {
      idp = spawn(process.execPath, [DEV_IDP], { env: { ...process.env, DEV_IDP_PORT: '0' }, stdio: ['pipe', 'pipe', 'pipe'] });
      const lines: string[] = [];
      createInterface({ input: idp.stdout! }).on('line', (l) => lines.push(l));
      await until(() => lines.filter((l) => l === '---').length === 2, 'the printed config', 15_000);
      const text = lines.join('\n');
      const issuer = /^issuer:\s+(http:\/\/127\.0\.0\.1:\d+)$/m.exec(text)?.[1];
      expect(issuer).toBeDefined();
      expect(text).toMatch(/^ {2}orders-client\s+secret demo-orders-secret\s+auth client_secret_basic\s+grant client_credentials/m);
      expect(text).toMatch(/^ {2}inventory-client\s+secret demo-inventory-secret\s+auth client_secret_post\s+grant refresh_token/m);
      const seed = /^seed: (\S+)$/m.exec(text)![1]!;
      const start = lines.indexOf('---');
      const config = parseYaml(lines.slice(start + 1, lines.indexOf('---', start + 1)).join('\n')) as Record<string, any>;
      expect(config.tokens.orders.issuer).toBe(issuer);
      expect(config.tokens.inventory.refreshToken).toBe(seed);

      // The printed config, with only where tokend listens and writes changed.
      const port = await freePort();
      config.listen = `127.0.0.1:${port}`;
      config.store.dir = join(s.dir, 'tokens');
      tokend = new TokendProcess(['run', '--config', s.file('tokend.yaml', stringify(config))]);
      await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, 'tokend ready', 20_000);
      expect((await getToken(`http://127.0.0.1:${port}`, 'inventory')).status).toBe(200);
      expect((await getToken(`http://127.0.0.1:${port}`, 'orders')).status).toBe(200);

      idp.stdin!.write('\n');
      await until(() => lines.filter((l) => l.startsWith('seed: ')).length === 2, 'a second seed', 10_000);
      const second = lines.filter((l) => l.startsWith('seed: '))[1]!.slice('seed: '.length);
      expect(second).not.toBe(seed);
      expect(second.length).toBeGreaterThan(20);
    } finally {
      await tokend?.stop();
      if (idp && idp.exitCode === null) {
        idp.kill('SIGTERM');
        const [code] = (await once(idp, 'exit')) as [number | null];
        expect(code).toBe(0);
      }
      s.cleanup();
    }
  });
});
