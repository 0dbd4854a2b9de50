// Memory taken by loading the token verifier: RSS and V8 heap after importing the daemon's modules
// with and without the verify path, each in a fresh Node process (after a full GC), medians of
// several runs. The bare baseline, measured in the same run, is a Node process that imports nothing.
// Runs against the BUILT code (dist/), so `npm run build` first.
//
//   node bench/verify-footprint.mjs              # 5 runs per scenario
//   BENCH_ROUNDS=9 node bench/verify-footprint.mjs
//
// "daemon without verify" imports every module dist/daemon.js imports statically except
// verify/verifier.js: the daemon once it loads the verifier through verify/load.js (loadVerifier)
// only when a `verify:` section exists.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', 'dist');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const daemonJs = path.join(dist, 'daemon.js');
if (!existsSync(path.join(dist, 'verify', 'load.js'))) {
  console.error('bench/verify-footprint.mjs: dist/verify/load.js is missing; run `npm run build` first');
  process.exit(1);
}

const url = (rel) => pathToFileURL(path.join(dist, rel)).href;
// The daemon's own static imports (packages and modules), as written in dist/daemon.js.
const daemonImports = [...readFileSync(daemonJs, 'utf8').matchAll(/^import\s+(?:[^'"]*?from\s+)?['"]([^'"]+)['"]/gm)]
  .map((m) => m[1])
  .map((spec) => (spec.startsWith('.') ? url(spec) : spec));
const withoutVerify = daemonImports.filter((s) => !s.endsWith('/verify/verifier.js'));

const SCENARIOS = [
  ['bare node (baseline)', []],
  ['daemon without verify', withoutVerify],
  ['daemon without verify + verify/load.js', [...withoutVerify, url('verify/load.js')]],
  ['daemon + verifier (verify section, JWT only)', [...withoutVerify, url('verify/verifier.js')]],
  ['daemon + verifier + keyv (introspection used)', [...withoutVerify, url('verify/verifier.js'), url('verify/introspection-cache.js')]],
  ['daemon.js as built (imports the verifier statically)', [url('daemon.js')]],
  // What each package costs on its own (jose is also loaded by oauth/client-auth.ts for private_key_jwt).
  ['jose alone', ['jose']],
  ['keyv alone', ['keyv']],
  ['verify/verifier.js alone (jose, openid-client, pino)', [url('verify/verifier.js')]],
];

/** { rss, heap } in bytes, after importing specs in a fresh process and a full GC. */
function measure(specs) {
  // Bare package names resolve from the working directory: the project root.
  const code = `
    for (const s of ${JSON.stringify(specs)}) await import(s);
    for (let i = 0; i < 3; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
    const m = process.memoryUsage();
    process.stdout.write(JSON.stringify({ rss: m.rss, heap: m.heapUsed }));`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { cwd: path.join(here, '..') });
  return JSON.parse(out.toString());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const MB = (b) => (b / 1024 / 1024).toFixed(1);

const results = SCENARIOS.map(([name, specs]) => {
  const runs = Array.from({ length: ROUNDS }, () => measure(specs));
  return { name, rss: median(runs.map((r) => r.rss)), heap: median(runs.map((r) => r.heap)) };
});
const base = results[0];
const noVerify = results[1];
console.log(`medians of ${ROUNDS} fresh processes; MB = MiB`);
console.log(['scenario', 'RSS MB', 'heap MB', 'RSS over bare', 'RSS over daemon without verify', 'heap over daemon without verify'].join(' | '));
for (const r of results) {
  console.log(
    [r.name, MB(r.rss), MB(r.heap), `+${MB(r.rss - base.rss)}`, `${r.rss >= noVerify.rss ? '+' : ''}${MB(r.rss - noVerify.rss)}`, `${r.heap >= noVerify.heap ? '+' : ''}${MB(r.heap - noVerify.heap)}`].join(' | '),
  );
}
