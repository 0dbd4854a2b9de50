// Idle CPU: what tokend costs between refreshes, when nothing is due. For 10, 1,000 and 10,000
// tokens (1-hour tokens, so no refresh falls in the window), tokend starts (memory store unless
// BENCH_STORE says file or redis), acquires every token, settles, and then its CPU time (user +
// system, /proc/PID/stat) is read over BENCH_IDLE_S seconds (default 60) of idling; a bare
// node:http server idles over the same window as the reference. Every process idles at once.
// Runs dist/ (`npm run build` first) with the image's node flags (its NODE_OPTIONS, from the Dockerfile).
//
//   node bench/idle.mjs                                            # ~2.5 min
//   BENCH_IDLE_SIZES=10,1000 BENCH_IDLE_S=120 node bench/idle.mjs
//   BENCH_STORE=redis node bench/idle.mjs                          # starts redis-server on a free port
//   BENCH_NODE=/path/to/node24 node bench/idle.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cpuOf, get, imageFlags, memOf, NODE, nodeVersionOf, row, sleep, startBare, startIdp, startTokend, writeConfig } from './lib/proc.mjs';

const SIZES = (process.env.BENCH_IDLE_SIZES ?? '10,1000,10000').split(',').map(Number);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 60);
const STORE = process.env.BENCH_STORE ?? 'memory';

/** A free loopback port (listen on 0, read it, close). */
export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts redis-server on a free port with no persistence; resolves with {url, stop}. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  process.on('exit', () => child.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.end();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    pid: child.pid,
    stop: () =>
      new Promise((r) => {
        child.once('exit', r);
        child.kill('SIGTERM');
      }),
  };
}

async function main() {
  const flags = imageFlags();
  const version = await nodeVersionOf(NODE);
  console.log(`idle CPU over ${IDLE_S} s, node ${version}, ${STORE} store, flags: ${flags.join(' ') || '(none)'}`);
  const idp = await startIdp({ latencyMs: 0, ttlSec: 3600 });
  const redis = STORE === 'redis' ? await startRedis() : undefined;
  const dirs = [];
  const procs = [];
  try {
    const bare = await startBare({ flags });
    await get(bare.url);
    procs.push({ name: 'bare node:http', pid: bare.pid, stop: bare.stop });
    for (const n of SIZES) {
      const dir = mkdtempSync(path.join(tmpdir(), 'tokend-idle-'));
      dirs.push(dir);
      const store =
        STORE === 'file' ? `type: file\ndir: ${path.join(dir, 'tokens')}` : STORE === 'redis' ? `type: redis\nurl: ${redis.url}\nprefix: "idle${n}:"` : 'type: memory';
      const cfg = writeConfig(dir, { n, issuer: idp.url, store });
      let acquired = 0;
      const t = startTokend(cfg, { flags, onLine: (r) => r.event === 'token.acquired' && acquired++ });
      while (acquired < n) {
        if (t.child.exitCode !== null) throw new Error(`tokend exited: ${t.stderr().slice(-1000)}`);
        await sleep(100);
      }
      procs.push({ name: `tokend ${n} tokens`, pid: t.pid, stop: t.stop });
    }
    // redis-server's own CPU shows what the daemons ask of it while idle.
    if (redis) procs.push({ name: 'redis-server', pid: redis.pid, stop: async () => undefined });
    // Let start-up garbage collection and the first reconcile ticks pass.
    await sleep(20_000);
    for (const p of procs) p.cpu0 = cpuOf(p.pid);
    await sleep(IDLE_S * 1000);
    for (const p of procs) {
      p.cpuPerMin = ((cpuOf(p.pid) - p.cpu0) / IDLE_S) * 60;
      p.rss = memOf(p.pid).rss;
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await idp.stop();
    await redis?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
  const W = [22, 16, 10];
  console.log(row(['process', 'CPU s / min', 'RSS MiB'], W));
  for (const p of procs) console.log(row([p.name, p.cpuPerMin.toFixed(3), p.rss.toFixed(0)], W));
  console.log(`CPU from /proc/PID/stat (10 ms ticks: ${((0.01 / IDLE_S) * 60).toFixed(3)} s/min resolution).`);
  console.log(JSON.stringify({ bench: 'idle', node: version, store: STORE, flags, idleS: IDLE_S, results: procs.map(({ name, cpuPerMin, rss }) => ({ name, cpuPerMin, rss })) }));
}

if (process.argv[1] === new URL(import.meta.url).pathname) await main();
