// What a node:http server costs before tokend's own code: a bare server, then the same server with
// one thing added that tokend cannot do without (node:crypto, node:tls, one https:// request, the
// other builtins it loads), each in its own process, idling together. It puts the footprint
// bench's figures against a floor: with an https:// IdP, what is left of "1.3x a bare server" for
// tokend's JavaScript (docs/performance.md, "Where the rest goes"). Then each of tokend's larger
// dependencies alone, bundled and minified as the image ships them (rolldown), in the same kind
// of server: what each would cost a program that used nothing else (`npm run build` first).
//
//   node bench/floor.mjs                              # 3 rounds, 8 s idle (~30 s)
//   BENCH_NODE=/path/to/node24 node bench/floor.mjs
//   BENCH_FLAGS="--max-semi-space-size=1" node bench/floor.mjs   # default: the image's flags
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'rolldown';
import { imageFlags, median, memOf, NODE, nodeVersionOf, row, selfSignedCert, sleep, startIdp } from './lib/proc.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 8);
const FLAGS = process.env.BENCH_FLAGS !== undefined ? process.env.BENCH_FLAGS.split(' ').filter(Boolean) : imageFlags();

/** Each variant: lines run before the server starts listening (CommonJS, `node -e`). */
function variants(idpUrl) {
  const builtins = ['crypto', 'fs/promises', 'child_process', 'worker_threads', 'assert', 'os', 'dns', 'module'];
  return {
    'bare node:http': '',
    '+ node:crypto (createHash, randomUUID)': "const c = require('node:crypto'); c.createHash('sha256').update('x').digest(); c.randomUUID();",
    '+ node:tls': "require('node:tls');",
    '+ one https:// keep-alive request': `const h = require('node:https'); h.get('${idpUrl}/.well-known/openid-configuration', { agent: new h.Agent({ keepAlive: true }) }, (r) => r.resume());`,
    '+ the builtins tokend loads on an http IdP': `for (const m of ${JSON.stringify(builtins)}) require(m); require('node:crypto').createHash('sha256'); globalThis.crypto.subtle; new ReadableStream(); new Date().getDay();`,
  };
}

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SERVER = "require('node:http').createServer((q, s) => s.end('x')).listen(0, '127.0.0.1');";

/** Each dependency's case: an ES module body that loads it and does what tokend does with it once. */
function dependencyCases() {
  const dist = (f) => JSON.stringify(pathToFileURL(path.join(ROOT, 'dist', f)).href);
  const pkg = (f) => JSON.stringify(pathToFileURL(path.join(ROOT, 'node_modules', f)).href);
  return {
    'zod alone (one small schema, one parse)': `import * as z from ${pkg('zod/index.js')}; globalThis.k = z.object({ a: z.string() }).parse({ a: 'x' });`,
    "tokend's configuration schema (zod, fields, node-cron's parser)": `import { checkConfig } from ${dist('config/schema.js')}; globalThis.k = checkConfig({ tokens: { a: { issuer: 'https://idp.example', clientId: 'a', clientSecret: 's', grant: 'client_credentials' } } });`,
    'yaml (one parse)': `import { parseDocument } from ${pkg('yaml/dist/index.js')}; globalThis.k = parseDocument('a: 1\\nb: [1, 2]\\n').toJS();`,
    "pino (tokend's logger, one line)": `import { createLogger } from ${dist('log.js')}; createLogger('info').info({ event: 'x' });`,
    'openid-client (loaded)': `import * as o from ${pkg('openid-client/build/index.js')}; globalThis.k = o;`,
    'commander (one program)': `import { Command } from ${pkg('commander/index.js')}; globalThis.k = new Command('x').option('--config <file>').parse(['node', 'x']);`,
  };
}

/** Bundles each case as the image's bundle is built (scripts/bundle.mjs): returns name -> file. */
async function bundleDependencies(dir) {
  const files = {};
  for (const [name, body] of Object.entries(dependencyCases())) {
    const id = `dep${Object.keys(files).length}`;
    const entry = path.join(dir, `${id}.mjs`);
    writeFileSync(entry, `const http = process.getBuiltinModule('node:http');\nhttp.createServer((q, s) => s.end('x')).listen(0, '127.0.0.1');\n${body}\n`);
    const out = path.join(dir, id);
    await build({ input: entry, platform: 'node', logLevel: 'silent', output: { dir: out, format: 'esm', minify: true, charset: 'ascii' } });
    files[name] = path.join(out, readdirSync(out).find((f) => f.startsWith(id)));
  }
  return files;
}

/** Starts one case: `{ code }` run by `node -e` before the server, or `{ file }` run as it is. */
function start({ code, file }, env) {
  const argv = file !== undefined ? [file] : ['-e', `${code}\n${SERVER}`];
  return spawn(NODE, [...FLAGS, ...argv], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
}

const dir = mkdtempSync(path.join(tmpdir(), 'tokend-floor-'));
const cert = selfSignedCert(dir);
const idp = await startIdp({ latencyMs: 0, tls: { key: cert.key, cert: cert.cert } });
// The same bare server as an ES module, the baseline of the dependency rows.
const bareModule = path.join(dir, 'bare.mjs');
writeFileSync(bareModule, `process.getBuiltinModule('node:http').createServer((q, s) => s.end('x')).listen(0, '127.0.0.1');\n`);
const deps = await bundleDependencies(dir);
const cases = Object.fromEntries(Object.entries(variants(idp.url)).map(([name, code]) => [name, { code }]));
cases['bare node:http, as an ES module'] = { file: bareModule };
for (const [name, file] of Object.entries(deps)) cases[`+ ${name}`] = { file };
const results = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
const all = [];
try {
  for (let r = 0; r < ROUNDS; r++) {
    const procs = Object.entries(cases).map(([name, c]) => [name, start(c, { NODE_EXTRA_CA_CERTS: cert.certFile })]);
    all.push(...procs.map(([, p]) => p));
    await sleep(IDLE_S * 1000);
    for (const [name, p] of procs) {
      const m = memOf(p.pid);
      if (m === undefined || p.exitCode !== null) throw new Error(`${name}: the process exited early`);
      results[name].push(m);
      p.kill();
    }
  }
} finally {
  for (const p of all) p.kill();
  await idp.stop();
  rmSync(dir, { recursive: true, force: true });
}

const bareOf = (name) => median(results[name].map((m) => m.rss));
const widths = [66, 9, 10, 10, 8];
console.log(`a node:http server and what tokend cannot do without, node ${await nodeVersionOf()}: ${ROUNDS} rounds, ${IDLE_S} s idle, flags: ${FLAGS.join(' ') || '(none)'}`);
console.log(row(['process', 'idle MiB', 'anon MiB', 'file MiB', 'x bare'], widths));
const out = [];
for (const [name, ms] of Object.entries(results)) {
  // Module rows are measured against the ES-module server, the others against the CommonJS one.
  const bare = cases[name].file !== undefined ? bareOf('bare node:http, as an ES module') : bareOf('bare node:http');
  const rss = median(ms.map((m) => m.rss));
  const anon = median(ms.map((m) => m.anon));
  const file = median(ms.map((m) => m.file));
  console.log(row([name, rss.toFixed(1), anon.toFixed(1), file.toFixed(1), (rss / bare).toFixed(2)], widths));
  out.push({ name, idleMiB: rss, anonMiB: anon, fileMiB: file, ratioToBare: rss / bare });
}
console.log(JSON.stringify({ bench: 'floor', node: await nodeVersionOf(), flags: FLAGS, rounds: ROUNDS, results: out }));
