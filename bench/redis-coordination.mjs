// Replicas sharing one Redis and one rotating refresh token: how many IdP grants each refresh
// cycle costs with 1, 2, 4 and 8 replicas (coordination should keep it at one, whatever the
// count), and how long a newly committed token takes to be served by every replica.
// Runs the BUILT daemon (dist/cli.js, `npm run build`) as separate processes, the dev IdP
// (build/dev/idp.js, built here with tsconfig.dev.json when missing) and a private redis-server.
//
//   node bench/redis-coordination.mjs                  # 1,2,4,8 replicas, 8 cycles of 1.8 s each (~1.5 min)
//   BENCH_REPLICAS=1,4 BENCH_CYCLES=3 BENCH_LOG_DIR=/tmp/logs node bench/redis-coordination.mjs
//
// A cycle is the mean refresh interval: the access-token lifetime (BENCH_TTL seconds, default 4)
// times the mean jittered refresh fraction (refreshAt 0.5 minus up to 0.1, so 0.45). Grants are
// counted by the IdP itself; start-up grants are reported apart, and every run is also compared
// with the 1-replica run (the grant count should match a single instance).
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(root, 'dist', 'cli.js');
const IDP = path.join(root, 'build', 'dev', 'idp.js');
const REPLICAS = (process.env.BENCH_REPLICAS ?? '1,2,4,8').split(',').map(Number);
const CYCLES = Number(process.env.BENCH_CYCLES ?? 8);
const TTL_SEC = Number(process.env.BENCH_TTL ?? 4);
const REFRESH_AT = 0.5;
// refresh/policy.ts: due after (refreshAt - 0.1 * random) of the lifetime, random uniform in [0, 1).
const CYCLE_MS = TTL_SEC * 1000 * (REFRESH_AT - 0.05);
const TOKEN = 'orders';

// ---------------------------------------------------------------- helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startRedisServer(dir) {
  const port = await freePort();
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
    { stdio: 'ignore' },
  );
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => 50 });
  client.on('error', () => undefined);
  for (let i = 0; i < 100 && client.status !== 'ready'; i++) await sleep(50);
  if (client.status !== 'ready') throw new Error('redis-server did not start (is it on PATH?)');
  return { url: `redis://127.0.0.1:${port}/0`, client, stop: () => (client.disconnect(), proc.kill('SIGTERM')) };
}

/** GET with the tokend header; resolves { status, body }. */
function getToken(base) {
  return new Promise((resolve) => {
    const req = http.get(
      `${base}/v1/token/${TOKEN}`,
      { headers: { 'Tokend-Request': '1', Accept: 'text/plain' }, agent: keepAlive },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Starts one `tokend run`; resolves once it logged its URL. BENCH_LOG_DIR keeps each replica's log. */
function startReplica(config, label) {
  const child = spawn(process.execPath, [CLI, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (process.env.BENCH_LOG_DIR) child.stdout.pipe(createWriteStream(path.join(process.env.BENCH_LOG_DIR, `${label}.ndjson`)));
  let buf = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c) => (stderr += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start: ${stderr.slice(-500)}`)), 20_000);
    child.on('exit', (code) => reject(new Error(`replica exited with ${code}: ${stderr.slice(-500)}`)));
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const doc = JSON.parse(line);
          if (doc.event === 'server.listening' && typeof doc.url === 'string') {
            clearTimeout(timer);
            resolve({ child, url: doc.url });
          }
        } catch {
          // not a log line
        }
      }
    });
  });
}

async function stopReplica(r) {
  if (r.child.exitCode !== null) return;
  const exited = new Promise((res) => r.child.once('exit', res));
  r.child.kill('SIGTERM');
  await exited;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// ---------------------------------------------------------------- one scenario

async function scenario(n, ctx) {
  const prefix = `bench${n}:`;
  const seed = await ctx.idp.mintRefreshToken('tokend', 'openid offline_access');
  const seedFile = path.join(ctx.dir, `seed-${n}`);
  writeFileSync(seedFile, seed, { mode: 0o600 });
  const config = path.join(ctx.dir, `tokend-${n}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      listen: '127.0.0.1:0',
      store: { type: 'redis', url: ctx.redis.url, prefix },
      tokens: {
        [TOKEN]: {
          issuer: ctx.idp.issuer,
          clientId: 'tokend',
          clientSecret: 'tokend-dev-secret',
          grant: 'refresh_token',
          refreshTokenFile: seedFile,
          refreshAt: REFRESH_AT,
        },
      },
      logLevel: process.env.BENCH_LOG_LEVEL ?? 'info', // server.listening (the URL) is an info line
    }),
  );

  const before = ctx.idp.stats();
  const replicas = await Promise.all(Array.from({ length: n }, (_, i) => startReplica(config, `replicas-${n}-${i + 1}`)));
  // Ready = every replica serves a token.
  for (const r of replicas) {
    for (let i = 0; (await getToken(r.url)).status !== 200; i++) {
      if (i > 400) throw new Error('a replica never became ready');
      await sleep(25);
    }
  }
  const atStart = ctx.idp.stats();

  // Propagation: for every commit, the time until each replica serves the committed token.
  const sub = ctx.redis.client.duplicate();
  sub.on('error', () => undefined);
  const spreads = [];
  const pending = [];
  let published = 0;
  sub.on('message', () => {
    published++;
    const t0 = performance.now();
    pending.push(
      (async () => {
        const committed = await ctx.redis.client.get(prefix + TOKEN);
        if (!committed) return;
        const times = await Promise.all(
          replicas.map(async (r) => {
            for (;;) {
              const { status, body } = await getToken(r.url);
              if (status === 200 && body === committed) return performance.now() - t0;
              // A newer commit may already have replaced it: that one is timed on its own.
              if (performance.now() - t0 > 3_000) return undefined;
              await sleep(1);
            }
          }),
        );
        if (times.every((t) => t !== undefined)) spreads.push(Math.max(...times));
      })(),
    );
  });
  await sub.subscribe(`${prefix}events`);

  const windowMs = CYCLES * CYCLE_MS;
  await sleep(windowMs);
  const atEnd = ctx.idp.stats();
  await sub.quit();
  await Promise.all(pending);
  await Promise.all(replicas.map(stopReplica));

  const grants = (s) => s.grants.refresh_token ?? 0;
  const invalid = (s) => s.errors.invalid_grant ?? 0;
  spreads.sort((a, b) => a - b);
  return {
    replicas: n,
    startupGrants: grants(atStart) - grants(before),
    windowGrants: grants(atEnd) - grants(atStart),
    cycles: windowMs / CYCLE_MS,
    invalidGrant: invalid(atEnd) - invalid(before),
    // Every commit (one new token for the whole fleet) is announced once on the channel.
    commits: published,
    timed: spreads.length,
    p50: percentile(spreads, 0.5),
    p95: percentile(spreads, 0.95),
    max: spreads.at(-1) ?? NaN,
  };
}

// ---------------------------------------------------------------- main

if (!existsSync(CLI)) {
  console.error('dist/cli.js is missing: run `npm run build` first');
  process.exit(1);
}
if (!existsSync(IDP)) {
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.dev.json'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(IDP)) {
    console.error('build/dev/idp.js is missing and `tsc -p tsconfig.dev.json` failed');
    process.exit(1);
  }
}
const { startDevIdp } = await import(pathToFileURL(IDP).href);

const dir = mkdtempSync(path.join(tmpdir(), 'tokend-bench-'));
const redis = await startRedisServer(dir);
const idp = await startDevIdp({ accessTokenTtlSec: TTL_SEC, rotateRefreshTokens: true });
const rows = [];
try {
  for (const n of REPLICAS) {
    const row = await scenario(n, { dir, redis, idp });
    rows.push(row);
    console.log(JSON.stringify(row));
  }
} finally {
  await idp.close();
  redis.stop();
  keepAlive.destroy();
  rmSync(dir, { recursive: true, force: true });
}

const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : 'n/a');
const single = rows.find((r) => r.replicas === 1);
console.log(
  `\nrotating refresh token, access token lifetime ${TTL_SEC} s, refreshAt ${REFRESH_AT}: mean cycle ${CYCLE_MS / 1000} s, ${CYCLES} cycles per run\n`,
);
console.log('| replicas | grants at start-up | refresh cycles (new tokens) | IdP grants | grants per cycle | vs 1 replica | invalid_grant | new token served by every replica: p50 / p95 / max |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
const perCycle = (r) => (r.commits > 0 ? r.windowGrants / r.commits : NaN);
for (const r of rows) {
  const ratio = single && perCycle(single) > 0 ? (perCycle(r) / perCycle(single)).toFixed(2) : 'n/a';
  console.log(
    `| ${r.replicas} | ${r.startupGrants} | ${r.commits} | ${r.windowGrants} | ${perCycle(r).toFixed(2)} | ${ratio} | ${r.invalidGrant} | ${ms(r.p50)} / ${ms(r.p95)} / ${ms(r.max)} |`,
  );
}
if (rows.some((r) => r.invalidGrant > 0)) process.exitCode = 1;
