// Memory and start-up of tokend with one token, against a bare node:http server measured in the
// same run: RSS when /readyz first answers 200, RSS after idling, the start-up peak (VmHWM), time
// to listening and to ready. tokend runs from dist/ (`npm run build` first) against the fake IdP
// (bench/lib/fake-idp.mjs, 50 ms latency), over http and over https (a self-signed certificate
// trusted with NODE_EXTRA_CA_CERTS: real IdPs are https, and TLS has its own cost), each with
// node's default V8 settings and with the V8 flags of the image (its NODE_OPTIONS, read from the
// Dockerfile), so the flags' effect is measured, not assumed.
//
//   node bench/footprint.mjs                                  # 3 rounds, 20 s idle (~1.5 min)
//   BENCH_NODE=/path/to/node24 node bench/footprint.mjs       # children run on another node
//   BENCH_ROUNDS=5 BENCH_IDLE_S=60 node bench/footprint.mjs
//   BENCH_BUNDLE=0 node bench/footprint.mjs      # without the image's bundle (scripts/bundle.mjs), measured by default
//
// Every process of a round idles at the same time, so drift on a shared machine hits all alike.
// Figures are medians over rounds; the ratio is the median of each round's tokend / bare.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bundleImage, get, imageFlags, median, memOf, NODE, nodeVersionOf, row, selfSignedCert, sleep, startBare, startIdp, startTokend, waitReady, writeConfig } from './lib/proc.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 20);

async function round(dir, idps, flags, bundled) {
  const procs = [];
  const bare = async (name, f) => {
    const b = await startBare({ flags: f });
    await get(b.url);
    procs.push({ name, pid: b.pid, ready: memOf(b.pid), stop: b.stop, bare: true });
  };
  const tokend = async (name, idp, f, cli) => {
    const cfg = writeConfig(path.join(dir, name), { n: 1, issuer: idp.url });
    const t = startTokend(cfg, { flags: f, cli, env: idp.caFile ? { NODE_EXTRA_CA_CERTS: idp.caFile } : {} });
    const rec = await t.waitLog((r) => r.event === 'server.listening');
    const listenMs = Number(process.hrtime.bigint() - t.started) / 1e6;
    const readyMs = (await waitReady(rec.url, t.started, { intervalMs: 10 })) * 1000;
    procs.push({ name, pid: t.pid, ready: memOf(t.pid), listenMs, readyMs, stop: t.stop });
  };
  await bare('bare node:http', []);
  if (flags.length > 0) await bare('bare, image flags', flags);
  for (const [scheme, idp] of Object.entries(idps)) {
    await tokend(`tokend ${scheme}`, idp, []);
    if (flags.length > 0) await tokend(`tokend ${scheme}, image flags`, idp, flags);
    if (bundled) await tokend(`tokend ${scheme}, the image (bundle, flags)`, idp, flags, bundled);
  }
  await sleep(IDLE_S * 1000);
  for (const p of procs) p.idle = memOf(p.pid);
  await Promise.all(procs.map((p) => p.stop()));
  return procs;
}

async function main() {
  const flags = imageFlags();
  const version = await nodeVersionOf(NODE);
  const dir = mkdtempSync(path.join(tmpdir(), 'tokend-footprint-'));
  const cert = selfSignedCert(dir);
  const idps = {
    http: await startIdp({ latencyMs: 50 }),
    https: { ...(await startIdp({ latencyMs: 50, tls: { key: cert.key, cert: cert.cert } })), caFile: cert.certFile },
  };
  console.log(`tokend, 1 token, node ${version}: ${ROUNDS} rounds, ${IDLE_S} s idle, image flags: ${flags.join(' ') || '(none)'}`);
  const rounds = [];
  try {
    const bundled = process.env.BENCH_BUNDLE === '0' ? undefined : bundleImage(dir);
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(dir, idps, flags, bundled));
  } finally {
    await Promise.all(Object.values(idps).map((i) => i.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
  const W = [30, 11, 10, 10, 11, 11, 8, 11, 10];
  console.log(row(['process', 'ready MiB', 'idle MiB', 'peak MiB', 'peak-idle', 'idle anon', 'x bare', 'listen ms', 'ready ms'], W));
  const results = [];
  for (const name of rounds[0].map((p) => p.name)) {
    const runs = rounds.map((r) => r.find((p) => p.name === name));
    const bareName = 'bare node:http';
    const ratio = median(rounds.map((r) => r.find((p) => p.name === name).idle.rss / r.find((p) => p.name === bareName).idle.rss));
    const res = {
      name,
      readyMiB: median(runs.map((p) => p.ready.rss)),
      idleMiB: median(runs.map((p) => p.idle.rss)),
      peakMiB: median(runs.map((p) => p.idle.peak)),
      peakOverIdleMiB: median(runs.map((p) => p.idle.peak - p.idle.rss)),
      idleAnonMiB: median(runs.map((p) => p.idle.anon)),
      idleFileMiB: median(runs.map((p) => p.idle.file)),
      ratioToBare: ratio,
      listenMs: runs[0].bare ? undefined : median(runs.map((p) => p.listenMs)),
      readyMs: runs[0].bare ? undefined : median(runs.map((p) => p.readyMs)),
    };
    results.push(res);
    const f1 = (x) => (x === undefined ? '' : x.toFixed(1));
    console.log(row([name, f1(res.readyMiB), f1(res.idleMiB), f1(res.peakMiB), f1(res.peakOverIdleMiB), f1(res.idleAnonMiB), res.ratioToBare.toFixed(2), f1(res.listenMs), f1(res.readyMs)], W));
  }
  console.log('RSS from /proc/PID/status: VmRSS; peak = VmHWM; anon = RssAnon (the rest is file-backed: the node binary\'s pages). x bare: idle RSS over the bare server\'s (default flags), per round, median.');
  console.log(JSON.stringify({ bench: 'footprint', node: version, flags, rounds: ROUNDS, idleS: IDLE_S, results }));
}

await main();
