// Throughput and latency of GET /v1/token/NAME against a bare node:http server that answers the
// same bytes (same JSON body, same headers): the ratio is what tokend's routing, header checks and
// validity check cost. Runs against the BUILT server (dist/), so `npm run build` first.
//
//   node bench/http.mjs            # 8 rounds x 1.25 s per scenario, 50 keep-alive connections (~45 s)
//   BENCH_ROUNDS=3 BENCH_SECONDS=1 BENCH_CONNECTIONS=20 node bench/http.mjs
//   BENCH_FLAGS="--optimize-for-size --disable-optimizing-compilers" node bench/http.mjs   # both servers
//
// Each server runs in its own child process; this process is the load generator (a small
// keep-alive client on raw sockets, one request in flight per connection). Scenarios alternate
// within each round so drift on a shared machine hits both sides alike.
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib/proc.mjs';
import { serveCpuQueries, startServed } from './lib/served.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
/** This script: its servers run as `node self --serve kind arg` (lib/served.mjs). */
const self = fileURLToPath(import.meta.url);
const dist = path.join(here, '..', 'dist');
// Many short rounds rather than a few long ones: on a shared machine, pairing each tokend run with
// the baseline run next to it cancels most of the drift.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.25);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const WARMUP_MS = 1_000;
const TOKEN_NAME = 'orders';
const LIFETIME_MS = 3_600_000; // expires_in keeps 4 digits for the whole run, so body sizes stay equal

/** A JWT-sized access token (~1 KB, like a typical IdP's), fixed so both servers send the same bytes. */
function fakeJwt() {
  const part = (n, seed) => {
    let s = '';
    for (let i = 0; i < n; i++) s += 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[(i * 31 + seed * 7) % 64];
    return s;
  };
  return `${part(36, 1)}.${part(640, 2)}.${part(342, 3)}`;
}

// ---------------------------------------------------------------- servers (child processes)

async function serveBaseline(token) {
  const CT_JSON = 'application/json; charset=utf-8';
  const CT_TEXT = 'text/plain; charset=utf-8';
  const json = Buffer.from(
    JSON.stringify({
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_at: Math.floor(token.expiresAt / 1000),
      expires_in: Math.floor((token.expiresAt - Date.now()) / 1000),
      scope: token.scope,
    }),
  );
  const text = Buffer.from(token.accessToken);
  // Flat header arrays built once: the cheapest form node:http takes, so this is a true floor.
  const jsonHeaders = ['Content-Type', CT_JSON, 'Cache-Control', 'no-store', 'Content-Length', String(json.length)];
  const textHeaders = ['Content-Type', CT_TEXT, 'Cache-Control', 'no-store', 'Content-Length', String(text.length)];
  const server = http.createServer((req, res) => {
    // The least a server must do to pick the representation: find the Accept header.
    const raw = req.rawHeaders;
    let wantsText = false;
    for (let i = 0; i < raw.length; i += 2) if (raw[i + 1] === 'text/plain') wantsText = true;
    if (wantsText) {
      res.writeHead(200, textHeaders);
      res.end(text);
    } else {
      res.writeHead(200, jsonHeaders);
      res.end(json);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server.address().port;
}

async function serveTokend(token) {
  const { createTokenServer } = await import(pathToFileURL(path.join(dist, 'server', 'http.js')).href);
  const { Metrics } = await import(pathToFileURL(path.join(dist, 'server', 'metrics.js')).href);
  const { systemClock } = await import(pathToFileURL(path.join(dist, 'clock.js')).href);
  const { createLogger } = await import(pathToFileURL(path.join(dist, 'log.js')).href);
  const handle = {
    name: TOKEN_NAME,
    // What a refresher does on the hot path: one validity comparison on an in-memory token.
    current: () => (token.expiresAt > systemClock.now() ? token : undefined),
    ensureFresh: async () => token,
    status: () => ({ name: TOKEN_NAME, ready: true, expiresAt: token.expiresAt }),
    retryAfterMs: () => 1_000,
  };
  const handles = new Map([[TOKEN_NAME, handle]]);
  const server = createTokenServer({
    handles,
    metrics: new Metrics({ clock: systemClock, handles }),
    clock: systemClock,
    logger: createLogger('warn'),
  });
  const url = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return Number(new URL(url).port);
}

// ---------------------------------------------------------------- load generator

function requestBytes(accept) {
  return Buffer.from(
    `GET /v1/token/${TOKEN_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\nTokend-Request: 1\r\nAccept: ${accept}\r\n\r\n`,
  );
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
// Both servers send this exact spelling (node keeps the case the application gives).
const CONTENT_LENGTH = Buffer.from('\r\nContent-Length: ');

/** One keep-alive connection: sends the request, waits for the whole response, repeats until stopped. */
function connection(port, bytes, state) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let sentAt = 0n;
    const send = () => {
      if (state.stopped) return sock.end();
      sentAt = process.hrtime.bigint();
      state.sent++;
      sock.write(bytes);
    };
    sock.on('connect', send);
    sock.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        // Parsed on the Buffer (no string per response), so the client costs less than the servers.
        const headEnd = buf.indexOf(CRLFCRLF);
        if (headEnd < 0) return;
        const cl = buf.indexOf(CONTENT_LENGTH);
        let bodyLength = 0;
        if (cl >= 0 && cl < headEnd) {
          for (let i = cl + CONTENT_LENGTH.length; buf[i] >= 48 && buf[i] <= 57; i++) bodyLength = bodyLength * 10 + buf[i] - 48;
        }
        const total = headEnd + 4 + bodyLength;
        if (buf.length < total) return;
        // "HTTP/1.1 200": bytes 9..11
        if (buf[9] !== 50 || buf[10] !== 48 || buf[11] !== 48) state.errors++;
        buf = buf.subarray(total);
        if (state.recording) {
          state.count++;
          state.latencies.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
        }
        send();
      }
    });
    sock.on('error', reject);
    sock.on('close', resolve);
  });
}

async function load(server, accept, ms) {
  const port = server.port;
  const bytes = requestBytes(accept);
  const cpuBefore = await server.cpuMicros();
  const state = { stopped: false, recording: true, count: 0, sent: 0, errors: 0, latencies: [] };
  const conns = Array.from({ length: CONNECTIONS }, () => connection(port, bytes, state));
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, ms));
  state.recording = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  state.stopped = true;
  await Promise.all(conns);
  const cpu = (await server.cpuMicros()) - cpuBefore;
  // CPU per request is measured over every request of the slice (recording stops a little early).
  return { rps: state.count / elapsed, cpuPerRequest: cpu / Math.max(1, state.sent), latencies: state.latencies, errors: state.errors };
}

/** Fetches one response with node's client, to check both servers answer the same bytes. */
function probe(port, accept) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: `/v1/token/${TOKEN_NAME}`, headers: { 'Tokend-Request': '1', Accept: accept }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.rawHeaders, body }));
      })
      .on('error', reject);
  });
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function main() {
  if (!existsSync(path.join(dist, 'server', 'http.js'))) {
    console.error('bench/http.mjs: dist/server/http.js not found; run `npm run build` first');
    process.exit(1);
  }
  const now = Date.now();
  const token = { accessToken: fakeJwt(), tokenType: 'Bearer', expiresAt: now + LIFETIME_MS, obtainedAt: now, scope: 'orders:read orders:write' };
  const [baseline, tokend] = await Promise.all([startServed(self, 'baseline', JSON.stringify(token)), startServed(self, 'tokend', JSON.stringify(token))]);
  try {
    const servers = { baseline, tokend };
    const modes = [
      { name: 'json', accept: 'application/json' },
      { name: 'text', accept: 'text/plain' },
    ];
    for (const mode of modes) {
      const [a, b] = await Promise.all([probe(baseline.port, mode.accept), probe(tokend.port, mode.accept)]);
      const names = (r) => r.headers.filter((_, i) => i % 2 === 0).join(',');
      if (a.status !== 200 || b.status !== 200 || a.body.length !== b.body.length || names(a) !== names(b)) {
        throw new Error(`servers differ for ${mode.name}: ${a.status}/${b.status}, ${a.body.length}/${b.body.length} bytes, [${names(a)}] vs [${names(b)}]`);
      }
    }
    console.log(
      `GET /v1/token/${TOKEN_NAME}: ${ROUNDS} rounds x ${SECONDS} s per scenario, ${CONNECTIONS} keep-alive connections, node ${process.version}`,
    );
    for (const kind of ['baseline', 'tokend']) for (const mode of modes) await load(servers[kind], mode.accept, WARMUP_MS / 2);

    const results = {};
    const pairRatios = { json: [], text: [] };
    const cpuRatios = { json: [], text: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? ['baseline', 'tokend'] : ['tokend', 'baseline'];
      for (const mode of modes) {
        const rps = {};
        for (const kind of order) {
          const key = `${kind} ${mode.name}`;
          const r = await load(servers[kind], mode.accept, SECONDS * 1000);
          results[key] ??= { rps: [], cpu: [], latencies: [], errors: 0 };
          results[key].rps.push(r.rps);
          results[key].cpu.push(r.cpuPerRequest);
          for (const l of r.latencies) results[key].latencies.push(l);
          results[key].errors += r.errors;
          rps[kind] = r;
        }
        pairRatios[mode.name].push(rps.tokend.rps / rps.baseline.rps);
        cpuRatios[mode.name].push(rps.tokend.cpuPerRequest / rps.baseline.cpuPerRequest);
      }
    }

    const rows = [];
    for (const mode of modes) {
      for (const kind of ['baseline', 'tokend']) {
        const r = results[`${kind} ${mode.name}`];
        const sorted = r.latencies.sort((x, y) => x - y);
        rows.push({
          scenario: `${kind} ${mode.name === 'json' ? '(JSON)' : '(text/plain)'}`,
          mode: mode.name,
          kind,
          rps: median(r.rps),
          cpu: median(r.cpu),
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          errors: r.errors,
        });
      }
    }
    const pad = (s, n) => String(s).padEnd(n);
    const lpad = (s, n) => String(s).padStart(n);
    console.log(
      `${pad('scenario', 24)}${lpad('req/s (median)', 16)}${lpad('server CPU µs/req', 19)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('non-200', 9)}`,
    );
    for (const r of rows) {
      console.log(
        `${pad(r.scenario, 24)}${lpad(Math.round(r.rps), 16)}${lpad(r.cpu.toFixed(1), 19)}${lpad(r.p50.toFixed(2), 9)}${lpad(r.p99.toFixed(2), 9)}${lpad(r.errors, 9)}`,
      );
    }
    // Ratios are medians over rounds of tokend/baseline measured back to back in that round. Server
    // CPU per request is the steadier figure on a busy machine: it does not count time spent waiting
    // for a core.
    const summary = {};
    for (const mode of modes) {
      const rs = pairRatios[mode.name];
      const cs = cpuRatios[mode.name];
      summary[mode.name] = { rps_ratio: +median(rs).toFixed(3), cpu_per_request_ratio: +median(cs).toFixed(3) };
      console.log(
        `tokend/baseline, ${mode.name === 'json' ? 'JSON      ' : 'text/plain'}: req/s ${median(rs).toFixed(3)}` +
          ` (rounds ${Math.min(...rs).toFixed(2)}-${Math.max(...rs).toFixed(2)}),` +
          ` CPU per request ${median(cs).toFixed(3)} (rounds ${Math.min(...cs).toFixed(2)}-${Math.max(...cs).toFixed(2)})`,
      );
    }
    console.log(
      JSON.stringify({
        bench: 'http',
        results: rows.map((r) => ({ server: r.kind, accept: r.mode, rps: Math.round(r.rps), cpu_us_per_request: +r.cpu.toFixed(2), p50_ms: +r.p50.toFixed(3), p99_ms: +r.p99.toFixed(3) })),
        ratios: summary,
      }),
    );
    if (rows.some((r) => r.errors > 0)) process.exitCode = 1;
  } finally {
    for (const s of [baseline, tokend]) void s.stop();
  }
}

// Dispatch last: the helpers above are `const`s, initialised only once the module body has run.
if (process.argv[2] === '--serve') {
  const token = JSON.parse(process.argv[4]);
  const port = process.argv[3] === 'baseline' ? await serveBaseline(token) : await serveTokend(token);
  serveCpuQueries(port);
} else {
  await main();
}
