// The image's V8 flags against the alternatives, on the image's bundle with one token: RSS when
// /readyz first answers 200, after idling and the start-up peak; then, under load, CPU per token
// request and RSS after 120,000 requests. The flag sets differ only in the compiler flags of the
// image's ENTRYPOINT; all have its NODE_OPTIONS and --expose-gc. What
// docs/performance.md ("The image's V8 flags") quotes; start-up at 10,000 tokens per flag set is
// bench/scale.mjs with BENCH_FLAGS.
//
//   BENCH_NODE=/path/to/node24 node bench/v8-flags.mjs      # 3 rounds, 12 s idle, then load (~3 min)
//   BENCH_REQUESTS=20000 BENCH_LOAD_ROUNDS=6 ...            # requests per load round, load rounds
//   BENCH_TOKENS=10 ...                                     # tokens configured (default 1)
//
// Node 24 only: Node 20 has no --invocation-count-for-turbofan. The processes of a round idle at
// the same time and take the load in turn, so drift on a shared machine hits all alike.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bundleImage, cpuOf, median, memOf, NODE, nodeVersionOf, row, sleep, startIdp, startTokend, waitReady, writeConfig } from './lib/proc.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 12);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000);
const LOAD_ROUNDS = Number(process.env.BENCH_LOAD_ROUNDS ?? 6);
const CONNECTIONS = 20;
/** Tokens in the configuration (each with its own secret file); the load asks for the first. */
const TOKENS = Number(process.env.BENCH_TOKENS ?? 1);

const COMMON = ['--max-semi-space-size=1', '--max-old-space-size=256', '--expose-gc'];
const SETS = {
  "V8's defaults": [],
  '--optimize-for-size': ['--optimize-for-size'],
  '--disable-optimizing-compilers': ['--disable-optimizing-compilers'],
  '--no-maglev, TurboFan after 10,000 calls': ['--no-maglev', '--invocation-count-for-turbofan=10000', '--invocation-count-for-osr=10000'],
  "the image's: --no-maglev, TurboFan after 100,000 calls": ['--no-maglev', '--invocation-count-for-turbofan=100000', '--invocation-count-for-osr=100000'],
};


/** Starts one tokend per flag set; resolves with {name, t, url, ready} once each is ready. */
async function startAll(dir, idp, cli) {
  const procs = [];
  for (const [i, [name, flags]] of Object.entries(SETS).entries()) {
    const cfg = writeConfig(path.join(dir, `set${i}`), { n: TOKENS, issuer: idp.url });
    const t = startTokend(cfg, { flags: [...COMMON, ...flags], cli });
    const rec = await t.waitLog((r) => r.event === 'server.listening');
    await waitReady(rec.url, t.started, { intervalMs: 10 });
    procs.push({ name, t, url: rec.url, ready: memOf(t.pid) });
  }
  return procs;
}

/** REQUESTS GET /v1/token over CONNECTIONS keep-alive connections; resolves when all are answered. */
async function load(url, agent) {
  let left = REQUESTS;
  const one = () =>
    new Promise((resolve, reject) => {
      http
        .get(`${url}/v1/token/t00000`, { agent, headers: { 'Tokend-Request': '1' } }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (left-- > 0) await one();
  }));
}

async function main() {
  const version = await nodeVersionOf(NODE);
  if (spawnSync(NODE, ['--invocation-count-for-turbofan=10000', '-e', '0']).status !== 0) {
    console.log(`skipped: node ${version} lacks the image's V8 flags; run it with BENCH_NODE=/path/to/node24`);
    return;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'tokend-v8-flags-'));
  const idp = await startIdp({ latencyMs: 50 });
  const results = Object.fromEntries(Object.keys(SETS).map((n) => [n, { ready: [], idle: [], peak: [], cpuUs: [], loaded: [] }]));
  console.log(`tokend (the image's bundle), ${TOKENS} token(s), node ${version}: ${ROUNDS} rounds, ${IDLE_S} s idle; then ${LOAD_ROUNDS} x ${REQUESTS} requests each`);
  try {
    const cli = process.env.BENCH_CLI || bundleImage(dir);
    for (let r = 0; r < ROUNDS; r++) {
      const procs = await startAll(dir, idp, cli);
      await sleep(IDLE_S * 1000);
      for (const p of procs) {
        const m = memOf(p.t.pid);
        results[p.name].ready.push(p.ready.rss);
        results[p.name].idle.push(m.rss);
        results[p.name].peak.push(m.peak);
      }
      if (r === ROUNDS - 1) {
        const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
        for (let l = 0; l < LOAD_ROUNDS; l++) {
          for (const p of procs) {
            const before = cpuOf(p.t.pid);
            await load(p.url, agent);
            // The first round warms up (and, for the image, is when TurboFan starts): steady rounds only.
            if (l > 0) results[p.name].cpuUs.push(((cpuOf(p.t.pid) - before) * 1e6) / REQUESTS);
          }
        }
        for (const p of procs) results[p.name].loaded.push(memOf(p.t.pid).rss);
        agent.destroy();
      }
      await Promise.all(procs.map((p) => p.t.stop()));
    }
  } finally {
    await idp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const W = [72, 10, 9, 10, 13, 16];
  console.log(row(['flags (besides the first two and --expose-gc)', 'ready MiB', 'idle MiB', 'peak MiB', 'CPU µs/req', 'RSS after load'], W));
  const f = (xs, d = 1) => median(xs).toFixed(d);
  for (const [name, x] of Object.entries(results)) console.log(row([name, f(x.ready), f(x.idle), f(x.peak), f(x.cpuUs, 0), f(x.loaded)], W));
  console.log('RSS from /proc/PID/status (medians over rounds); CPU: user + system from /proc/PID/stat over each load round after the first (median).');
  console.log(JSON.stringify({ bench: 'v8-flags', node: version, results }));
}

await main();
