// How fast tokend recovers once an unreachable IdP comes back, and how hard it knocks meanwhile
// (issue 9 item 6). The BUILT daemon (dist/cli.js) runs against the dev IdP (build/dev/idp.js)
// behind a TCP proxy that can refuse every connection (the IdP "down"). One client polls
// /v1/token every 100 ms throughout, as a service would.
//
//   node bench/recovery.mjs                        # 20 recoveries, then a 60 s outage
//   BENCH_RUNS=20 BENCH_OUTAGE_S=300 node bench/recovery.mjs
//
// Recovery: from the moment the IdP accepts connections again to the first 200 with a new token,
// measured after the held token has expired (consumers are getting 503), p50/p95/max over the runs.
// Knocking: connection attempts reaching the proxy per minute during one long outage.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(root, 'dist', 'cli.js');
const IDP = path.join(root, 'build', 'dev', 'idp.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const OUTAGE_S = Number(process.env.BENCH_OUTAGE_S ?? 60);
const TTL_SEC = 3;

if (!existsSync(CLI) || !existsSync(IDP)) {
  const r = spawnSync('npm', ['run', '--silent', 'build:dev'], { cwd: root, stdio: 'inherit' });
  spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}
const { startDevIdp } = await import(pathToFileURL(IDP).href);

/** A TCP proxy that forwards to target(), or (down) destroys every connection at once: "connection refused/reset". */
async function startSwitch(target) {
  let down = false;
  let attempts = 0;
  const sockets = new Set();
  const server = net.createServer((client) => {
    attempts++;
    client.on('error', () => undefined);
    if (down) return client.destroy();
    const upstream = net.connect(target(), '127.0.0.1');
    upstream.on('error', () => client.destroy());
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    attempts: () => attempts,
    setDown(v) {
      down = v;
      if (v) for (const s of sockets) s.destroy();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

async function get(url) {
  try {
    const res = await fetch(`${url}/v1/token/orders`, { headers: { 'Tokend-Request': '1' }, signal: AbortSignal.timeout(2_000) });
    return { status: res.status, token: res.status === 200 ? (await res.json()).access_token : (await res.text(), undefined) };
  } catch {
    return { status: 0 };
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'tokend-bench-recovery-'));
// The IdP announces the switch's address as its issuer, so discovery and grants both go through it.
let idpPort = 0;
const sw = await startSwitch(() => idpPort);
const proxyPort = sw.port;
const idp = await startDevIdp({
  issuer: `http://127.0.0.1:${proxyPort}`,
  accessTokenTtlSec: TTL_SEC,
  clients: [{ clientId: 'bench', clientSecret: 'bench-secret', scope: 'api' }],
});
idpPort = Number(new URL(idp.url).port);

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
writeFileSync(path.join(dir, 'secret'), 'bench-secret\n');
writeFileSync(
  path.join(dir, 'tokend.yaml'),
  `listen: 127.0.0.1:${port}\nlogLevel: warn\ntokens:\n  orders:\n    issuer: http://127.0.0.1:${proxyPort}\n    clientId: bench\n    clientSecretFile: ${dir}/secret\n    grant: client_credentials\n    timeout: 1s\n`,
);
const child = spawn(process.execPath, [CLI, 'run', '--config', path.join(dir, 'tokend.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
const url = `http://127.0.0.1:${port}`;
try {
  while ((await get(url)).status !== 200) await sleep(50);

  const recoveries = [];
  for (let i = 0; i < RUNS; i++) {
    const before = (await get(url)).token;
    sw.setDown(true);
    // Until the held token has expired: consumers are getting 503.
    while ((await get(url)).status === 200) await sleep(100);
    await sleep(Math.random() * 3_000); // the IdP comes back at a random point of the retry cycle
    sw.setDown(false);
    const upAt = performance.now();
    for (;;) {
      const r = await get(url);
      if (r.status === 200 && r.token !== before) break;
      await sleep(20);
    }
    recoveries.push(performance.now() - upAt);
  }
  const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`recovery after the IdP returns, ${RUNS} runs: p50 ${fmt(percentile(recoveries, 50))}, p95 ${fmt(percentile(recoveries, 95))}, max ${fmt(Math.max(...recoveries))}`);
  console.log(`  every run (s): ${recoveries.map((r) => (r / 1000).toFixed(2)).join(' ')}`);

  // A long outage with a consumer polling every 100 ms: how often does tokend knock?
  sw.setDown(true);
  while ((await get(url)).status === 200) await sleep(100);
  const a0 = sw.attempts();
  const t0 = performance.now();
  while (performance.now() - t0 < OUTAGE_S * 1000) {
    await get(url);
    await sleep(100);
  }
  const perMinute = ((sw.attempts() - a0) / ((performance.now() - t0) / 60_000)).toFixed(1);
  console.log(`during a ${OUTAGE_S} s outage, with a consumer asking 10 times a second: ${perMinute} connection attempts to the IdP per minute`);
  sw.setDown(false);
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await sw.close();
  await idp.close();
  rmSync(dir, { recursive: true, force: true });
}
