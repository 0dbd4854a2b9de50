/**
 * `npm run demo`: a local development identity provider (oidc-provider, short-lived tokens,
 * rotating refresh tokens) and tokend against it with the file store, so a newcomer sees refresh
 * events within a minute and can curl the endpoint. Ctrl-C stops both.
 *
 * `DEMO_STORE=redis npm run demo`: the Redis store instead, on a private redis-server the demo
 * starts and stops (it must be on the PATH), with two tokend replicas sharing it: each new token
 * is obtained by one replica and adopted by the other, one grant per refresh cycle.
 *
 * Options (environment): DEMO_SECONDS=N stops after N seconds and prints the IdP's grant count;
 * DEMO_LISTEN=host:port (default 127.0.0.1:8477); DEMO_LISTEN2 the second replica's (default: the
 * next port); DEMO_TOKEN_TTL=seconds (default 10); DEMO_STORE=file|redis (default file).
 * DEMO_SECRETLESS=1 runs the secretless flow instead (dev/demo-secretless.ts, docs/secretless.md):
 * no client secret, key or refresh token anywhere, only a stand-in cluster's service-account token.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { DEMO_CLIENTS, startDevIdp } from './idp.js';
import { startLocalRedis, type LocalRedis } from './redis.js';

const ttl = Number(process.env.DEMO_TOKEN_TTL ?? 10);
const listen = process.env.DEMO_LISTEN ?? '127.0.0.1:8477';
const seconds = process.env.DEMO_SECONDS ? Number(process.env.DEMO_SECONDS) : undefined;
const storeType = process.env.DEMO_STORE ?? 'file';

if (storeType !== 'file' && storeType !== 'redis') {
  process.stderr.write(`demo: DEMO_STORE must be file or redis, not ${JSON.stringify(storeType)}\n`);
  process.exit(2);
}
// Checked before anything starts, so the message is the only output.
if (storeType === 'redis' && spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error !== undefined) {
  process.stderr.write(
    [
      'demo: DEMO_STORE=redis needs redis-server on the PATH, and there is none.',
      '  Debian/Ubuntu: sudo apt-get install redis-server    macOS: brew install redis',
      '  The demo starts and stops its own private instance; or run `npm run demo` for the file store.',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'tokend-demo-'));
if (process.env.DEMO_SECRETLESS === '1') {
  const { runSecretlessDemo } = await import('./demo-secretless.js');
  // Runs until Ctrl-C or DEMO_SECONDS, then exits the process.
  await runSecretlessDemo({ work, listen, ttl, seconds });
}
const secrets = join(work, 'secrets');
const tokens = join(work, 'tokens');
mkdirSync(secrets, { mode: 0o700 });

const idp = await startDevIdp({ accessTokenTtlSec: ttl, refreshTokenTtlSec: 3600, rotateRefreshTokens: true, clients: [...DEMO_CLIENTS] });
const seed = await idp.mintRefreshToken('inventory-client', 'openid offline_access');
writeFileSync(join(secrets, 'orders-secret'), 'demo-orders-secret\n', { mode: 0o600 });
writeFileSync(join(secrets, 'inventory-secret'), 'demo-inventory-secret\n', { mode: 0o600 });
writeFileSync(join(secrets, 'inventory-refresh-token'), seed + '\n', { mode: 0o600 });

const redis: LocalRedis | undefined = storeType === 'redis' ? await startLocalRedis(join(work, 'redis')) : undefined;
const store = redis
  ? `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "demo:"\n`
  : `store:\n  type: file\n  dir: ${tokens}\n  mode: "0600"\n`;

const configPath = join(work, 'tokend.yaml');
writeFileSync(
  configPath,
  `# written by npm run demo
listen: ${listen}
${store}tokens:
  orders:
    issuer: ${idp.issuer}
    clientId: orders-client
    clientSecretFile: ${join(secrets, 'orders-secret')}
    grant: client_credentials
    scope: "orders:read orders:write"
  inventory:
    issuer: ${idp.issuer}
    clientId: inventory-client
    clientSecretFile: ${join(secrets, 'inventory-secret')}
    clientAuth: client_secret_post
    grant: refresh_token
    refreshTokenFile: ${join(secrets, 'inventory-refresh-token')}
`,
);

const endpoint = listen.startsWith('unix:') ? listen : `http://${listen}`;
const listen2 = process.env.DEMO_LISTEN2 ?? nextPort(listen);
const endpoint2 = `http://${listen2}`;
process.stderr.write(banner());

const cli = resolve(import.meta.dirname, '../../dist/cli.js');
const replicas: ChildProcess[] = [];
if (redis) {
  // Each replica's lines get "replica":N, so the interleaved log shows who granted and who adopted.
  for (const [n, addr] of [[1, listen], [2, listen2]] as const) {
    const child = spawn(process.execPath, [cli, 'run', '--config', configPath, '--listen', addr], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      process.stdout.write(line.startsWith('{') ? `{"replica":${n},${line.slice(1)}\n` : `${line}\n`);
      countGrant(line);
    });
    replicas.push(child);
  }
} else {
  replicas.push(spawn(process.execPath, [cli, 'run', '--config', configPath], { stdio: ['ignore', 'inherit', 'inherit'] }));
}

/** New inventory tokens (rotating refresh token): obtained from the IdP, or adopted from Redis. */
const inventory = { granted: 0, adopted: 0 };
function countGrant(line: string): void {
  if (!line.includes('"token":"inventory"') || !line.includes('"event":"token.refreshed"')) return;
  if (line.includes('"adopted":true')) inventory.adopted++;
  else inventory.granted++;
}

let finished = false;
async function finish(code: number): Promise<void> {
  if (finished) return;
  finished = true;
  await Promise.all(
    replicas.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }),
  );
  const stats = idp.stats();
  process.stderr.write(`\nIdP served: ${JSON.stringify(stats.grants)}; errors: ${JSON.stringify(stats.errors)}\n`);
  if (redis) {
    process.stderr.write(
      `inventory (rotating refresh token): ${inventory.granted} new tokens granted by one replica, ${inventory.adopted} adopted by the other: ` +
        `one grant per refresh cycle for both replicas\n`,
    );
    await redis.stop();
  }
  await idp.close();
  rmSync(work, { recursive: true, force: true });
  process.exit(code);
}

for (const child of replicas) child.once('exit', (code) => void finish(code ?? 1));
process.once('SIGINT', () => void finish(0));
process.once('SIGTERM', () => void finish(0));
if (seconds !== undefined) setTimeout(() => void finish(0), seconds * 1000);

function nextPort(addr: string): string {
  const m = /^(.*):(\d+)$/.exec(addr);
  return m ? `${m[1]}:${Number(m[2]) + 1}` : '127.0.0.1:8478';
}

function banner(): string {
  const common = [
    '',
    `dev identity provider: ${idp.issuer} (access tokens live ${ttl} s; refresh tokens rotate)`,
    `tokend config:         ${configPath}`,
  ];
  if (!redis) {
    return [
      ...common,
      `token files:           ${tokens}/orders, ${tokens}/inventory`,
      '',
      'try, in another terminal:',
      `  curl -s -H 'Tokend-Request: 1' ${endpoint}/v1/token/orders`,
      `  curl -s ${endpoint}/readyz ; curl -s ${endpoint}/metrics | grep tokend_`,
      `  node dist/cli.js get inventory --url ${endpoint}`,
      `  cat ${tokens}/orders.json`,
      '',
      'refresh events follow (JSON, one per line); Ctrl-C stops.',
      '',
    ].join('\n');
  }
  return [
    ...common,
    `redis:                 ${redis.url} (private, started by the demo, gone when it stops)`,
    `replicas:              ${endpoint} and ${endpoint2}, sharing Redis under the prefix demo:`,
    '',
    'try, in another terminal:',
    `  curl -s -H 'Tokend-Request: 1' ${endpoint}/v1/token/inventory ; curl -s -H 'Tokend-Request: 1' ${endpoint2}/v1/token/inventory`,
    `  redis-cli -p ${redis.port} GET demo:orders ; redis-cli -p ${redis.port} GET demo:inventory:meta`,
    `  node dist/cli.js get orders --url ${endpoint2}`,
    '',
    'refresh events of both replicas follow ("replica":1 or 2): each new inventory token is granted',
    'by one replica ("adopted":false) and adopted by the other ("adopted":true). Ctrl-C stops.',
    '',
  ].join('\n');
}
