// Shared helpers for the footprint, idle, scale and soak benches: child processes (the fake IdP,
// tokend from dist/, a bare node:http server), their RSS and CPU read from /proc, config files
// with secret files, and small statistics. Linux only (/proc).
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/cli.js of this checkout (run `npm run build` first), or BENCH_CLI. */
export const CLI = process.env.BENCH_CLI || path.join(here, '..', '..', 'dist', 'cli.js');

/** The node binary children run with: BENCH_NODE (e.g. a Node 24 binary) or this one. */
export const NODE = process.env.BENCH_NODE || process.execPath;

// Every child still running when this process exits (a failed bench included) is killed.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** The CLK_TCK of /proc/PID/stat times (100 on every Linux this runs on). */
const TICKS_PER_SEC = 100;

/**
 * RSS of pid in MiB, undefined once the process is gone: rss (VmRSS), peak (VmHWM), anon
 * (RssAnon: heap, malloc; what a memory limit must hold) and file (RssFile: pages of the node
 * binary and libraries, clean and shared with every process running the same files).
 */
export function memOf(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024, anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
}

/** User + system CPU seconds pid has used so far (from /proc/PID/stat). */
export function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS_PER_SEC;
}

function runSync(argv) {
  return new Promise((resolve) => {
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', () => resolve(out.trim()));
  });
}

/** Node version of NODE, e.g. 'v24.1.0'. */
export async function nodeVersionOf(node = NODE) {
  return runSync([node, '--version']);
}

/** Starts the fake IdP (bench/lib/fake-idp.mjs) in a child process. */
export async function startIdp(opts = {}) {
  const child = track(fork(path.join(here, 'fake-idp.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const replies = [];
  child.on('message', (m) => replies.shift()?.(m));
  const ask = (msg) =>
    new Promise((resolve) => {
      replies.push(resolve);
      child.send(msg);
    });
  const { port } = await ask({ cmd: 'start', ...opts });
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    pid: child.pid,
    stats: () => ask({ cmd: 'stats' }),
    reset: () => ask({ cmd: 'reset' }),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.disconnect();
      }),
  };
}

/**
 * The node flags the image runs with, passed to children as flags: its `ENV NODE_OPTIONS="..."`
 * and the flags between node and the script in its ENTRYPOINT (V8 flags node refuses in
 * NODE_OPTIONS), less those `node` does not have (Node 20 has no --invocation-count-for-turbofan).
 */
export function imageFlags(node = NODE) {
  const text = readFileSync(path.join(here, '..', '..', 'Dockerfile'), 'utf8');
  const env = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(text)?.[1].split(/\s+/).filter(Boolean) ?? [];
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(text);
  const argv = entry ? JSON.parse(entry[1]) : [];
  return [...env, ...argv.slice(1).filter((a) => a.startsWith('--'))].filter((flag) => spawnSync(node, [flag, '-e', '0']).status === 0);
}

/** The image's build of tokend: `node scripts/bundle.mjs DIR/bundle` (dist/ bundled and minified); returns its cli.js. */
export function bundleImage(dir) {
  const out = path.join(dir, 'bundle');
  execFileSync(process.execPath, [path.join(here, '..', '..', 'scripts', 'bundle.mjs'), out], { stdio: 'ignore' });
  return path.join(out, 'dist', 'cli.js');
}

/** Token names t00000, t00001, ... */
export const tokenName = (i) => `t${String(i).padStart(5, '0')}`;

/**
 * Writes DIR/config.yaml with n client_credentials tokens against issuer, each with its own
 * secret file (DIR/secrets/NAME), and returns its path. extra: more top-level YAML lines.
 */
export function writeConfig(dir, { n, issuer, store = 'type: memory', extra = [], perToken = [] }) {
  mkdirSync(path.join(dir, 'secrets'), { recursive: true });
  const lines = [
    'listen: 127.0.0.1:0',
    'logLevel: info',
    ...extra,
    'store:',
    ...store.split('\n').map((l) => `  ${l}`),
    'tokens:',
  ];
  for (let i = 0; i < n; i++) {
    const name = tokenName(i);
    const secretFile = path.join(dir, 'secrets', name);
    writeFileSync(secretFile, `secret-${name}\n`, { mode: 0o600 });
    lines.push(`  ${name}:`, `    issuer: ${issuer}`, `    clientId: ${name}`, '    grant: client_credentials', `    clientSecretFile: ${secretFile}`, ...perToken.map((l) => `    ${l}`));
  }
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/**
 * Starts `node [flags] dist/cli.js run --config FILE` (stdout parsed as NDJSON log lines, the
 * first 10,000 kept; onLine sees every one). waitLog(pred) resolves with the first line for
 * which pred holds.
 */
export function startTokend(configFile, { flags = [], node = NODE, env = {}, onLine, cli = CLI } = {}) {
  const child = track(
    spawn(node, [...flags, cli, 'run', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    }),
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const started = process.hrtime.bigint();
  const lines = [];
  let buf = '';
  const waiters = [];
  child.stdout.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        continue;
      }
      onLine?.(rec);
      if (lines.length < 10_000) lines.push(rec);
      for (const w of [...waiters]) w(rec);
    }
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    pid: child.pid,
    started,
    lines,
    exited,
    stderr: () => stderr,
    /** Resolves with the first log record for which pred holds. */
    waitLog: (pred) =>
      new Promise((resolve, reject) => {
        const found = lines.find(pred);
        if (found) return resolve(found);
        const w = (rec) => {
          if (pred(rec)) {
            waiters.splice(waiters.indexOf(w), 1);
            resolve(rec);
          }
        };
        waiters.push(w);
        void exited.then(({ code }) => reject(new Error(`tokend exited (code ${code}): ${stderr.slice(0, 500)}`)));
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** GET url; resolves with {status, body}. */
export function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
}

/**
 * Polls BASE/readyz every intervalMs until it answers 200; resolves with the seconds it took from
 * t0 (hrtime bigint). Rejects at once if `proc` (a startTokend result) exits meanwhile.
 */
export async function waitReady(baseUrl, t0, { intervalMs = 100, timeoutMs = 600_000, onPoll, proc } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await get(`${baseUrl}/readyz`).catch(() => ({ status: 0 }));
    onPoll?.();
    if (r.status === 200) return Number(process.hrtime.bigint() - t0) / 1e9;
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(`tokend exited (${proc.child.exitCode ?? proc.child.signalCode}) before ready: ${proc.stderr().slice(-2000)}`);
    }
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms: ${r.status} ${String(r.body).slice(0, 300)}`);
    await sleep(intervalMs);
  }
}

/** A bare node:http server answering every request with a small JSON body, as its own process. */
export function startBare({ flags = [], node = NODE } = {}) {
  const src = `const http=require('node:http');const body=JSON.stringify({access_token:'x'.repeat(600),token_type:'Bearer',expires_in:3600});http.createServer((q,s)=>{s.writeHead(200,{'content-type':'application/json'});s.end(body)}).listen(0,'127.0.0.1',function(){process.stdout.write(JSON.stringify({port:this.address().port})+'\\n')})`;
  const child = track(spawn(node, [...flags, '-e', src], { stdio: ['ignore', 'pipe', 'inherit'] }));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d) => {
      const { port } = JSON.parse(String(d));
      resolve({
        pid: child.pid,
        url: `http://127.0.0.1:${port}`,
        stop: () =>
          new Promise((r) => {
            child.once('exit', r);
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

/**
 * A self-signed certificate for 127.0.0.1 (openssl CLI), written to dir: {key, cert} as PEM text
 * and certFile, the path a client can trust with NODE_EXTRA_CA_CERTS.
 */
export function selfSignedCert(dir) {
  const keyFile = path.join(dir, 'idp-key.pem');
  const certFile = path.join(dir, 'idp-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Least-squares slope of ys over xs. */
export function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Right-aligned table row. */
export function row(cells, widths) {
  return cells.map((c, i) => String(c).padStart(widths[i] ?? 10)).join('');
}
