// Soak: tokend under steady load for BENCH_SOAK_S seconds (default 600): 10 tokens living 2 s
// (so each is refreshed every ~1.5 s), ~200 requests/s on GET /v1/token/NAME, once with the file
// store and once with the Redis store (redis-server on a free port), both at the same time.
// RSS (/proc) is sampled every 10 s; the report gives the least-squares slope over the whole run
// and over its second half (after warm-up), the answers by status (every one must be 200) and the
// refreshes the IdP served. Runs dist/ (`npm run build` first) with the image's node flags.
//
//   BENCH_NODE=/path/to/node24 node bench/soak.mjs           # 10 minutes
//   BENCH_SOAK_S=120 node bench/soak.mjs                      # a short one
// (Not part of `npm run bench` unless BENCH_SOAK=1: it takes 10 minutes.)
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRedis } from './idle.mjs';
import { cpuOf, imageFlags, memOf, NODE, nodeVersionOf, row, sleep, slope, startIdp, startTokend, tokenName, writeConfig } from './lib/proc.mjs';

const SOAK_S = Number(process.env.BENCH_SOAK_S ?? 600);
const RATE = Number(process.env.BENCH_SOAK_RATE ?? 200);
const TOKENS = 10;
const SAMPLE_MS = 10_000;

/** Sends `rate` GET /v1/token/NAME a second (round robin over the tokens) until stopped; counts answers by status. */
function load(baseUrl, rate) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const statuses = {};
  let i = 0;
  let errors = 0;
  const tickMs = 50;
  const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
  const timer = setInterval(() => {
    for (let k = 0; k < perTick; k++) {
      const name = tokenName(i++ % TOKENS);
      http
        .get(`${baseUrl}/v1/token/${name}`, { agent, headers: { 'Tokend-Request': '1' } }, (res) => {
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          res.resume();
        })
        .on('error', () => errors++);
    }
  }, tickMs);
  return {
    stop() {
      clearInterval(timer);
      agent.destroy();
      return { statuses, errors, sent: i };
    },
  };
}

async function soakOne(name, dir, idp, store, flags) {
  const cfg = writeConfig(dir, { n: TOKENS, issuer: idp.url, store });
  const t = startTokend(cfg, { flags });
  const rec = await t.waitLog((r) => r.event === 'server.listening');
  await t.waitLog((r) => r.event === 'token.acquired' && r.token === tokenName(TOKENS - 1));
  return { name, t, url: rec.url, samples: [] };
}

async function main() {
  const flags = imageFlags();
  const version = await nodeVersionOf(NODE);
  console.log(`soak: ${SOAK_S} s, ${TOKENS} tokens of 2 s, ~${RATE} requests/s per process, node ${version}, flags: ${flags.join(' ')}`);
  const idp = await startIdp({ latencyMs: 5, ttlSec: 2 });
  const redis = await startRedis();
  const dirs = [mkdtempSync(path.join(tmpdir(), 'tokend-soak-')), mkdtempSync(path.join(tmpdir(), 'tokend-soak-'))];
  const runs = [];
  try {
    runs.push(await soakOne('file store', dirs[0], idp, `type: file\ndir: ${path.join(dirs[0], 'tokens')}`, flags));
    runs.push(await soakOne('redis store', dirs[1], idp, `type: redis\nurl: ${redis.url}\nprefix: "soak:"`, flags));
    const tokens0 = (await idp.stats()).ok;
    for (const r of runs) {
      r.load = load(r.url, RATE);
      r.cpu0 = cpuOf(r.t.pid);
    }
    const started = Date.now();
    while (Date.now() - started < SOAK_S * 1000) {
      await sleep(SAMPLE_MS);
      const at = (Date.now() - started) / 60_000;
      for (const r of runs) r.samples.push({ min: at, rss: memOf(r.t.pid).rss });
    }
    for (const r of runs) {
      r.answers = r.load.stop();
      r.cpu = cpuOf(r.t.pid) - r.cpu0;
    }
    const refreshes = (await idp.stats()).ok - tokens0;
    const W = [14, 10, 10, 10, 10, 14, 16, 10, 20];
    console.log(row(['store', 'first MiB', 'last MiB', 'min MiB', 'max MiB', 'slope MiB/min', '2nd half MiB/min', 'CPU s', 'answers'], W));
    const results = [];
    for (const r of runs) {
      const xs = r.samples.map((s) => s.min);
      const ys = r.samples.map((s) => s.rss);
      const half = Math.floor(r.samples.length / 2);
      const res = {
        store: r.name,
        firstMiB: ys[0],
        lastMiB: ys.at(-1),
        minMiB: Math.min(...ys),
        maxMiB: Math.max(...ys),
        slopeMiBPerMin: slope(xs, ys),
        secondHalfSlopeMiBPerMin: slope(xs.slice(half), ys.slice(half)),
        cpuSeconds: r.cpu,
        answers: r.answers,
        samples: ys.map((y) => +y.toFixed(1)),
      };
      results.push(res);
      const answers = Object.entries(res.answers.statuses).map(([s, c]) => `${s}:${c}`).join(' ') + (res.answers.errors ? ` err:${res.answers.errors}` : '');
      console.log(
        row([r.name, res.firstMiB.toFixed(1), res.lastMiB.toFixed(1), res.minMiB.toFixed(1), res.maxMiB.toFixed(1), res.slopeMiBPerMin.toFixed(3), res.secondHalfSlopeMiBPerMin.toFixed(3), res.cpuSeconds.toFixed(1), answers], W),
      );
    }
    console.log(`token grants served by the IdP during the soak (both processes): ${refreshes}`);
    for (const r of results) console.log(`${r.store} RSS every 10 s: ${r.samples.join(' ')}`);
    console.log(JSON.stringify({ bench: 'soak', node: version, flags, soakS: SOAK_S, rate: RATE, refreshes, results }));
  } finally {
    for (const r of runs) await r.t.stop();
    await idp.stop();
    await redis.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

await main();
