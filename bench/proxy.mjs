// Requests per second and added latency through tokend's egress proxy, against a bare
// pass-through proxy (node:http + an agent with the same options, setting the same Authorization
// header) measured in the same run, and nginx `proxy_pass` as a reference when nginx is installed.
// Runs against the BUILT proxy (dist/), so `npm run build` first.
//
//   node bench/proxy.mjs            # 6 rounds x 2 s per scenario: 50 connections for req/s, 1 for latency
//   BENCH_ROUNDS=3 BENCH_SECONDS=1 BENCH_CONNECTIONS=20 node bench/proxy.mjs
//
// The upstream, each proxy and nginx run in their own processes; the load comes from wrk when it
// is installed (apt-get install wrk), else from a small keep-alive generator in this process.
// Scenarios alternate within each round (the order rotates) so drift on a shared machine hits all
// alike; figures are medians over rounds, ratios are medians of per-round ratios. Added latency is
// a proxy's p50/p99 minus the upstream's own, both measured with one connection (no queueing).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { serveCpuQueries, startServed } from './lib/served.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
/** This script: its servers run as `node self --serve kind arg` (lib/served.mjs). */
const self = fileURLToPath(import.meta.url);
const dist = path.join(here, '..', 'dist');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const TOKEN = `eyJhbGciOiJSUzI1NiJ9.${'A'.repeat(640)}.${'B'.repeat(342)}`; // JWT-sized, ~1 KB
const BODY = Buffer.from(JSON.stringify({ orders: [{ id: 1, item: 'widget', qty: 3 }], next: null }));
const which = (cmd) => ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'].map((d) => path.join(d, cmd)).find(existsSync);

// ---------------------------------------------------------------- servers (child processes)

async function serveUpstream() {
  const headers = ['Content-Type', 'application/json', 'Content-Length', String(BODY.length)];
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) res.writeHead(401).end();
    else res.writeHead(200, headers).end(BODY);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server.address().port;
}

/** The agent options tokend's proxy uses (src/proxy/upstream.ts), for its 60 s default timeout. */
async function agentOptions() {
  const upstream = await import(pathToFileURL(path.join(dist, 'proxy', 'upstream.js')).href);
  return upstream.agentOptions(60_000);
}

async function serveBare(upstreamPort) {
  const agent = new http.Agent(await agentOptions());
  const auth = `Bearer ${TOKEN}`;
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers, host: `127.0.0.1:${upstreamPort}`, authorization: auth };
    delete headers.connection;
    const ureq = http.request({ agent, hostname: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers, timeout: 60_000 }, (ures) => {
      res.writeHead(ures.statusCode, ures.headers);
      ures.pipe(res);
    });
    ureq.on('error', () => res.writeHead(502).end());
    req.pipe(ureq);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server.address().port;
}

async function serveTokend(upstreamPort) {
  const { startProxies } = await import(pathToFileURL(path.join(dist, 'proxy', 'index.js')).href);
  const { systemClock } = await import(pathToFileURL(path.join(dist, 'clock.js')).href);
  const { createLogger } = await import(pathToFileURL(path.join(dist, 'log.js')).href);
  const { isUsable } = await import(pathToFileURL(path.join(dist, 'token.js')).href);
  const { Registry } = await import('prom-client');
  const now = Date.now();
  const token = { accessToken: TOKEN, tokenType: 'Bearer', expiresAt: now + 3_600_000, obtainedAt: now, deadline: systemClock.monotonic() + 3_600_000 };
  // What a refresher does on the hot path: the one validity rule on an in-memory token.
  const handle = { name: 'orders', current: () => (isUsable(token, systemClock) ? token : undefined), retryAfterMs: () => 1_000 };
  const proxies = await startProxies(
    [{ name: 'orders', listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, allowRemote: false, upstream: `http://127.0.0.1:${upstreamPort}`, token: 'orders', header: 'Authorization', scheme: 'Bearer', timeoutMs: 60_000, connectTimeoutMs: 5_000, retryBodyLimit: 65_536 }],
    new Map([['orders', handle]]),
    // Production's log level; lines go nowhere (stdout carries this process's replies).
    { clock: systemClock, logger: createLogger('info', { write: () => undefined }), registry: new Registry() },
  );
  return Number(new URL(proxies.urls.get('orders')).port);
}

/** nginx with one worker, a keep-alive upstream pool and the same Authorization header; undefined if not installed. */
async function startNginx(upstreamPort) {
  const bin = which('nginx');
  if (!bin) return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'tokend-bench-nginx-'));
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn; daemon off;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir};
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:${upstreamPort}; proxy_set_header Authorization "Bearer ${TOKEN}"; } } }\n`,
  );
  const child = spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((r) => net.connect(port, '127.0.0.1').once('connect', function () { this.destroy(); r(true); }).once('error', () => r(false)));
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { kind: 'nginx', port, cpuMicros: async () => NaN, stop: () => (child.kill('SIGQUIT'), setTimeout(() => rmSync(dir, { recursive: true, force: true }), 500)) };
}

// ---------------------------------------------------------------- load

const UNIT_MS = { us: 1e-3, ms: 1, s: 1000 };
// Every load request carries the token the upstream wants, so that the upstream alone (no proxy)
// answers too; the proxies replace it with their own (check() proves each one sets it).
const APP_AUTH = `Authorization: Bearer ${TOKEN}`;

/** wrk with --latency: requests/s and p50/p99 in ms. */
function wrk(port, connections, seconds) {
  // wrk takes whole seconds only.
  const out = execFileSync(which('wrk'), ['-t1', `-c${connections}`, `-d${Math.max(1, Math.round(seconds))}s`, '--latency', '-H', APP_AUTH, `http://127.0.0.1:${port}/v1/orders?limit=1`], { encoding: 'utf8' });
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)$`, 'm').exec(out);
    return Number(m[1]) * UNIT_MS[m[2]];
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), p50: pct(50), p99: pct(99), errors: non2xx, requests: Number(/(\d+) requests in/.exec(out)[1]) };
}

/** Fallback load generator: keep-alive connections on raw sockets, one request in flight each. */
async function nodeLoad(port, connections, seconds) {
  const bytes = Buffer.from(`GET /v1/orders?limit=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n${APP_AUTH}\r\n\r\n`);
  const state = { stop: false, count: 0, errors: 0, lat: [] };
  const one = () =>
    new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.setNoDelay(true);
      let buf = Buffer.alloc(0);
      let t0 = 0n;
      const send = () => (state.stop ? sock.end() : ((t0 = process.hrtime.bigint()), sock.write(bytes)));
      sock.on('connect', send).on('close', resolve).on('error', resolve);
      sock.on('data', (c) => {
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        if (buf[9] !== 50) state.errors++;
        buf = buf.subarray(end + 4 + len);
        state.count++;
        state.lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        send();
      });
    });
  const started = process.hrtime.bigint();
  const conns = Array.from({ length: connections }, one);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  state.stop = true;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  await Promise.all(conns);
  const sorted = state.lat.sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  return { rps: state.count / elapsed, p50: at(50), p99: at(99), errors: state.errors, requests: state.count };
}

const WRK = which('wrk');
const load = (port, connections, seconds) => (WRK ? Promise.resolve(wrk(port, connections, seconds)) : nodeLoad(port, connections, seconds));

const median = (xs) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function check(port) {
  return new Promise((resolve, reject) =>
    http.get({ host: '127.0.0.1', port, path: '/v1/orders?limit=1', agent: false }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c)).on('end', () => resolve({ status: res.statusCode, body: b }));
    }).on('error', reject),
  );
}

async function main() {
  if (!existsSync(path.join(dist, 'proxy', 'index.js'))) {
    console.error('bench/proxy.mjs: dist/proxy/index.js not found; run `npm run build` first');
    process.exit(1);
  }
  const upstream = await startServed(self, 'upstream', '0');
  const [bare, tokend] = await Promise.all([startServed(self, 'bare', String(upstream.port)), startServed(self, 'tokend', String(upstream.port))]);
  const nginx = await startNginx(upstream.port);
  const direct = { kind: 'upstream', port: upstream.port, cpuMicros: upstream.cpuMicros };
  const proxies = [bare, tokend, ...(nginx ? [nginx] : [])];
  try {
      for (const s of proxies) {
      const r = await check(s.port);
      if (r.status !== 200 || r.body !== BODY.toString()) throw new Error(`${s.kind} answered ${r.status} ${r.body.slice(0, 80)}`);
    }
    console.log(`GET through a proxy to a node:http upstream: ${ROUNDS} rounds x ${SECONDS} s per scenario, ${CONNECTIONS} connections (req/s) and 1 (latency), load from ${WRK ? 'wrk' : 'node'}, node ${process.version}${nginx ? `, ${spawnSync(which('nginx'), ['-v'], { encoding: 'utf8' }).stderr.trim()}` : ', nginx not installed'}`);
    for (const s of [direct, ...proxies]) await load(s.port, CONNECTIONS, 0.5); // warm-up

    const res = {};
    const ratio = { rps: [], cpu: [] };
    const all = [direct, ...proxies];
    for (let round = 0; round < ROUNDS; round++) {
      const order = all.map((_, i) => all[(i + round) % all.length]);
      const rps = {};
      for (const s of order) {
        const before = await s.cpuMicros();
        const r = await load(s.port, CONNECTIONS, SECONDS);
        const cpu = ((await s.cpuMicros()) - before) / Math.max(1, r.requests);
        const l = await load(s.port, 1, SECONDS);
        (res[s.kind] ??= { rps: [], cpu: [], p50: [], p99: [], errors: 0 }).rps.push(r.rps);
        res[s.kind].cpu.push(cpu);
        res[s.kind].p50.push(l.p50);
        res[s.kind].p99.push(l.p99);
        res[s.kind].errors += r.errors + l.errors;
        rps[s.kind] = { rps: r.rps, cpu };
      }
      ratio.rps.push(rps.tokend.rps / rps.bare.rps);
      ratio.cpu.push(rps.tokend.cpu / rps.bare.cpu);
    }

    const base = { p50: median(res.upstream.p50), p99: median(res.upstream.p99) };
    const pad = (s, n) => String(s).padEnd(n);
    const lpad = (s, n) => String(s).padStart(n);
    console.log(`${pad('scenario', 22)}${lpad('req/s', 9)}${lpad('proxy CPU µs/req', 18)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('+p50 ms', 9)}${lpad('+p99 ms', 9)}${lpad('non-2xx', 9)}`);
    const rows = [];
    for (const s of all) {
      const r = res[s.kind];
      const row = { server: s.kind, rps: median(r.rps), cpu: median(r.cpu), p50: median(r.p50), p99: median(r.p99), errors: r.errors };
      row.addedP50 = s === direct ? 0 : row.p50 - base.p50;
      row.addedP99 = s === direct ? 0 : row.p99 - base.p99;
      rows.push(row);
      const label = s === direct ? 'upstream (no proxy)' : s.kind === 'bare' ? 'bare node:http proxy' : s.kind === 'tokend' ? 'tokend proxy' : 'nginx proxy_pass';
      console.log(
        `${pad(label, 22)}${lpad(Math.round(row.rps), 9)}${lpad(Number.isFinite(row.cpu) ? row.cpu.toFixed(1) : '-', 18)}${lpad(row.p50.toFixed(3), 9)}${lpad(row.p99.toFixed(3), 9)}${lpad(s === direct ? '-' : row.addedP50.toFixed(3), 9)}${lpad(s === direct ? '-' : row.addedP99.toFixed(3), 9)}${lpad(row.errors, 9)}`,
      );
    }
    const r = (k) => rows.find((x) => x.server === k);
    console.log(
      `tokend/bare: req/s ${median(ratio.rps).toFixed(3)} (rounds ${Math.min(...ratio.rps).toFixed(2)}-${Math.max(...ratio.rps).toFixed(2)}), ` +
        `CPU per request ${median(ratio.cpu).toFixed(3)}; added p50 ${(r('tokend').addedP50 * 1000).toFixed(0)} µs (bare ${(r('bare').addedP50 * 1000).toFixed(0)} µs)` +
        (nginx ? `; nginx/bare req/s ${(r('nginx').rps / r('bare').rps).toFixed(3)}` : ''),
    );
    console.log(JSON.stringify({ bench: 'proxy', results: rows.map((x) => ({ ...x, rps: Math.round(x.rps), cpu: +x.cpu.toFixed?.(2), p50: +x.p50.toFixed(4), p99: +x.p99.toFixed(4), addedP50: +x.addedP50.toFixed(4), addedP99: +x.addedP99.toFixed(4) })), ratios: { rps: +median(ratio.rps).toFixed(3), cpu: +median(ratio.cpu).toFixed(3) } }));
    if (rows.some((x) => x.errors > 0)) process.exitCode = 1;
  } finally {
    for (const s of [upstream, ...proxies]) s.stop();
  }
}

// Dispatch last: the helpers above are `const`s, initialised only once the module body has run.
if (process.argv[2] === '--serve') {
  const kind = process.argv[3];
  const arg = Number(process.argv[4]);
  const port = kind === 'upstream' ? await serveUpstream() : kind === 'bare' ? await serveBare(arg) : await serveTokend(arg);
  serveCpuQueries(port);
} else {
  await main();
}
