// Time and size of one GET /metrics scrape with 1, 100, 1,000 and 10,000 configured tokens, against
// a bare node:http server answering a prebuilt body of the same size in the same run: the ratio is
// what rendering the metrics costs over merely sending that many bytes. Runs against the BUILT
// server (dist/), so `npm run build` first.
//
//   node bench/metrics.mjs                       # 15 rounds per size (~20 s)
//   BENCH_ROUNDS=5 BENCH_SIZES=1,100,1000 node bench/metrics.mjs
//   BENCH_FLAGS="--optimize-for-size --disable-optimizing-compilers" node bench/metrics.mjs   # both servers
//
// The last row is the largest size again with `metricsPerToken: false` (aggregates only).
//
// Each server runs in its own child process (a fresh one per size); this process is the scraper,
// one request at a time over a keep-alive connection, as Prometheus scrapes. Within each round the
// two servers are scraped back to back, in alternating order, so drift on a shared machine hits
// both alike. Every token looks like a healthy one: valid for an hour, one successful refresh.
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib/proc.mjs';
import { serveCpuQueries, startServed } from './lib/served.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
/** This script: its servers run as `node self --serve kind arg` (lib/served.mjs). */
const self = fileURLToPath(import.meta.url);
const dist = path.join(here, '..', 'dist');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const WARMUP = 3;
const SIZES = (process.env.BENCH_SIZES ?? '1,100,1000,10000').split(',').map(Number);
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

// ---------------------------------------------------------------- servers (child processes)

async function serveTokend(tokens, perToken) {
  const { createTokenServer } = await import(pathToFileURL(path.join(dist, 'server', 'http.js')).href);
  const { Metrics } = await import(pathToFileURL(path.join(dist, 'server', 'metrics.js')).href);
  const { systemClock } = await import(pathToFileURL(path.join(dist, 'clock.js')).href);
  const { createLogger } = await import(pathToFileURL(path.join(dist, 'log.js')).href);
  const now = systemClock.now();
  const handles = new Map();
  for (let i = 0; i < tokens; i++) {
    const name = `token-${String(i).padStart(5, '0')}`;
    const token = { accessToken: 'x', tokenType: 'Bearer', expiresAt: now + 3_600_000, obtainedAt: now };
    handles.set(name, {
      name,
      current: () => token,
      ensureFresh: async () => token,
      refreshAfterRejection: async () => token,
      status: () => ({ name, ready: true, expiresAt: token.expiresAt }),
      retryAfterMs: () => 1_000,
    });
  }
  // As the daemon builds it: process metrics on, every token tracked.
  const metrics = new Metrics({ clock: systemClock, handles, perToken });
  for (const name of handles.keys()) metrics.refreshFinished(name, 'success', 40 + (name.length % 7) * 10);
  const server = createTokenServer({ handles, metrics, clock: systemClock, logger: createLogger('warn', { write: () => undefined }) });
  const url = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return Number(new URL(url).port);
}

async function serveBaseline(bytes) {
  // The same number of bytes, built once: what node:http costs to send a body that size.
  const line = 'tokend_baseline_padding{token="token-00000"} 1\n';
  const body = Buffer.from(line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
  const headers = ['Content-Type', CONTENT_TYPE, 'Cache-Control', 'no-store', 'Content-Length', String(body.length)];
  const server = http.createServer((_req, res) => {
    res.writeHead(200, headers);
    res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server.address().port;
}

// ---------------------------------------------------------------- scraper

async function startServer(kind, arg) {
  const served = await startServed(self, kind, String(arg));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return { ...served, agent, stop: () => (agent.destroy(), served.stop()) };
}

/** One scrape: milliseconds from sending the request to the last body byte, and the body size. */
function scrape(server) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    http
      .get({ host: '127.0.0.1', port: server.port, path: '/metrics', agent: server.agent }, (res) => {
        let bytes = 0;
        let lines = 0;
        res.on('data', (c) => {
          bytes += c.length;
          for (let i = c.indexOf(10); i >= 0; i = c.indexOf(10, i + 1)) lines++;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`/metrics answered ${res.statusCode}`));
          resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, bytes, lines });
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}


async function measure(tokens, perToken = true) {
  const tokend = await startServer(perToken ? 'tokend' : 'tokend-aggregate', tokens);
  const first = await scrape(tokend);
  const baseline = await startServer('baseline', first.bytes);
  try {
    for (let i = 0; i < WARMUP; i++) {
      await scrape(tokend);
      await scrape(baseline);
    }
    const t = { ms: [], cpu: [], bytes: [] };
    const b = { ms: [], cpu: [] };
    const ratios = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [[tokend, t], [baseline, b]] : [[baseline, b], [tokend, t]];
      for (const [server, acc] of order) {
        const cpu0 = await server.cpuMicros();
        const r = await scrape(server);
        acc.cpu.push(((await server.cpuMicros()) - cpu0) / 1000);
        acc.ms.push(r.ms);
        acc.bytes?.push(r.bytes);
      }
      ratios.push(t.ms.at(-1) / b.ms.at(-1));
    }
    return {
      tokens: perToken ? String(tokens) : `${tokens} agg`,
      bytes: median(t.bytes),
      lines: first.lines,
      tokend_ms: median(t.ms),
      baseline_ms: median(b.ms),
      ratio: median(ratios),
      tokend_cpu_ms: median(t.cpu),
      baseline_cpu_ms: median(b.cpu),
    };
  } finally {
    await Promise.all([tokend.stop(), baseline.stop()]);
  }
}

async function main() {
  if (!existsSync(path.join(dist, 'server', 'metrics.js'))) {
    console.error('bench/metrics.mjs: dist/server/metrics.js not found; run `npm run build` first');
    process.exit(1);
  }
  console.log(`GET /metrics: ${ROUNDS} rounds per size (median), one scrape at a time, node ${process.version}`);
  const pad = (s, n) => String(s).padStart(n);
  console.log(
    `${pad('tokens', 10)}${pad('bytes', 12)}${pad('lines', 9)}${pad('tokend ms', 11)}${pad('bare ms', 9)}${pad('ratio', 8)}${pad('tokend CPU ms', 15)}${pad('bare CPU ms', 13)}`,
  );
  const results = [];
  const runs = [...SIZES.map((n) => [n, true]), [Math.max(...SIZES), false]];
  for (const [n, perToken] of runs) {
    const r = await measure(n, perToken);
    results.push(r);
    console.log(
      `${pad(r.tokens, 10)}${pad(r.bytes, 12)}${pad(r.lines, 9)}${pad(r.tokend_ms.toFixed(2), 11)}${pad(r.baseline_ms.toFixed(2), 9)}` +
        `${pad(r.ratio.toFixed(2), 8)}${pad(r.tokend_cpu_ms.toFixed(2), 15)}${pad(r.baseline_cpu_ms.toFixed(2), 13)}`,
    );
  }
  console.log('agg: metricsPerToken: false. ratio: median over rounds of tokend time / bare time measured back to back; CPU: server process, per scrape');
  console.log(JSON.stringify({ bench: 'metrics', results: results.map((r) => ({ ...r, tokend_ms: +r.tokend_ms.toFixed(3), baseline_ms: +r.baseline_ms.toFixed(3), ratio: +r.ratio.toFixed(3) })) }));
}

// Dispatch last: the helpers above are `const`s, initialised only once the module body has run.
if (process.argv[2] === '--serve') {
  const arg = Number(process.argv[4]);
  const kind = process.argv[3];
  const port = kind === 'baseline' ? await serveBaseline(arg) : await serveTokend(arg, kind === 'tokend');
  serveCpuQueries(port);
} else {
  await main();
}
