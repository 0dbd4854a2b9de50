// Start-up at scale: N client_credentials tokens, each with its own secret file, one IdP (the fake
// one of bench/lib/fake-idp.mjs, 50 ms per answer), tokend from dist/ (`npm run build` first).
// For each N: seconds until every token is acquired (and /readyz answers 200), what the IdP saw
// (discovery requests, token requests, peak requests in flight, peak open connections), tokend's
// peak RSS (VmHWM) and CPU seconds until ready, and failures (must be 0).
// A last run has the IdP answer 429 + Retry-After: 1 for its first 3 s: the ramp must slow down
// (token requests per second, first seconds, are printed).
//
//   node bench/scale.mjs                                   # N = 1, 100, 1000, 10000 (~4 min)
//   BENCH_SCALE_SIZES=1,100,1000 BENCH_NODE=/path/to/node24 node bench/scale.mjs
//   BENCH_FLAGS="--max-semi-space-size=1" node bench/scale.mjs      # node flags for tokend
//   BENCH_STORE=file node bench/scale.mjs                  # memory (default) or file store
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cpuOf, get, memOf, NODE, nodeVersionOf, row, startIdp, startTokend, writeConfig } from './lib/proc.mjs';

const SIZES = (process.env.BENCH_SCALE_SIZES ?? '1,100,1000,10000').split(',').map(Number);
const FLAGS = (process.env.BENCH_FLAGS ?? '').split(' ').filter(Boolean);
const STORE = process.env.BENCH_STORE ?? 'memory';
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 50);
const THROTTLE_N = Number(process.env.BENCH_THROTTLE_N ?? 1000);

/** Starts tokend with n tokens; resolves once all are acquired (or any failed for good / timeout). */
async function startup(dir, n, idpOpts) {
  const idp = await startIdp({ latencyMs: LATENCY_MS, ...idpOpts });
  const storeYaml = STORE === 'file' ? `type: file\ndir: ${path.join(dir, 'tokens')}` : 'type: memory';
  const cfg = writeConfig(dir, { n, issuer: idp.url, store: storeYaml });
  let acquired = 0;
  let failed = 0;
  let peakRss = 0;
  let done;
  const allDone = new Promise((r) => (done = r));
  const t = startTokend(cfg, {
    flags: FLAGS,
    onLine: (rec) => {
      if (rec.event === 'token.acquired') acquired++;
      else if (rec.event === 'token.refresh_failed') failed++;
      if (acquired === n) done();
    },
  });
  // VmHWM is the peak; sampled too so a run that dies still reports something.
  const sampler = setInterval(() => {
    const m = memOf(t.pid);
    if (m) peakRss = Math.max(peakRss, m.peak);
  }, 250);
  try {
    const listening = await t.waitLog((r) => r.event === 'server.listening');
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`not all ${n} tokens acquired within 15 min`)), 900_000).unref());
    const exited = t.exited.then(({ code }) => {
      throw new Error(`tokend exited (${code}): ${t.stderr().slice(-1000)}`);
    });
    await Promise.race([allDone, timeout, exited]);
    const readySeconds = Number(process.hrtime.bigint() - t.started) / 1e9;
    const cpu = cpuOf(t.pid);
    const mem = memOf(t.pid);
    const readyz = await get(`${listening.url}/readyz`);
    const stats = await idp.stats();
    return { n, readySeconds, readyz: readyz.status, cpu, peakRss: Math.max(peakRss, mem.peak), rss: mem.rss, acquired, failed, stats };
  } finally {
    clearInterval(sampler);
    await t.stop();
    await idp.stop();
  }
}

async function main() {
  const version = await nodeVersionOf(NODE);
  console.log(`start-up at scale, node ${version}, ${STORE} store, IdP latency ${LATENCY_MS} ms, flags: ${FLAGS.join(' ') || '(none)'}`);
  const W = [8, 10, 8, 11, 11, 10, 12, 11, 10, 9, 9];
  console.log(row(['tokens', 'ready s', 'readyz', 'discovery', 'token reqs', 'peak in', 'peak conns', 'peak MiB', 'ready MiB', 'CPU s', 'failed'], W));
  const results = [];
  for (const n of SIZES) {
    const dir = mkdtempSync(path.join(tmpdir(), 'tokend-scale-'));
    try {
      const r = await startup(dir, n, {});
      results.push(r);
      console.log(
        row(
          [n, r.readySeconds.toFixed(1), r.readyz, r.stats.discovery, r.stats.token, r.stats.peakInFlight, r.stats.peakConnections, r.peakRss.toFixed(0), r.rss.toFixed(0), r.cpu.toFixed(2), r.failed + r.stats.refused],
          W,
        ),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log('peak in: requests in flight at the IdP; failed: token.refresh_failed lines + grants the IdP refused.');

  // The IdP throttles: 429 + Retry-After: 1 for 3 s after the first token request.
  const dir = mkdtempSync(path.join(tmpdir(), 'tokend-scale-'));
  try {
    const r = await startup(dir, THROTTLE_N, { throttleMs: 3000, retryAfterSec: 1 });
    const perSecond = Object.entries(r.stats.perSecond).sort((a, b) => Number(a[0]) - Number(b[0]));
    console.log(
      `\n${THROTTLE_N} tokens, IdP answers 429 + Retry-After: 1 for 3 s: ready in ${r.readySeconds.toFixed(1)} s, ${r.stats.token} token requests ` +
        `(${r.stats.throttled} answered 429), peak in flight ${r.stats.peakInFlight}, transient failures logged ${r.failed}, readyz ${r.readyz}`,
    );
    console.log(`token requests per second since the first: ${perSecond.map(([s, c]) => `${s}s:${c}`).join(' ')}`);
    results.push({ throttled: true, ...r });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ bench: 'scale', node: version, store: STORE, flags: FLAGS, latencyMs: LATENCY_MS, results }));
}

await main();
