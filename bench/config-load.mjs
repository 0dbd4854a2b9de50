// CPU time of parseConfig (YAML/JSON parse, ${VAR} interpolation, zod validation, problem
// de-duplication) on configurations with many keys, at 10,000, 20,000 and 40,000 keys: a linear
// implementation takes about twice as long for twice the keys (the "x2" columns), a quadratic one
// four times. The bare baseline, measured in the same run, is JSON.parse of the same data.
// Runs against the BUILT code (dist/), so `npm run build` first; BENCH_DIST=/other/dist compares
// another build (e.g. the commit before).
//
//   node bench/config-load.mjs
//   BENCH_ROUNDS=1 BENCH_SIZES=40000 node bench/config-load.mjs
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.BENCH_DIST ?? path.join(here, '..', 'dist');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZES = (process.env.BENCH_SIZES ?? '10000,20000,40000').split(',').map(Number);
const loadJs = path.join(dist, 'config', 'load.js');
if (!existsSync(loadJs)) {
  console.error(`bench/config-load.mjs: ${loadJs} is missing; run \`npm run build\` first`);
  process.exit(1);
}
const { parseConfig } = await import(pathToFileURL(loadJs).href);

// Entries are as short as the limits allow (1 MiB, 400,000 YAML tokens): 40,000 of each fit.
/** Each scenario: [name, n => { text, source?, json }], json being the same data for the baseline. */
const SCENARIOS = [
  ['token keys (YAML), each token empty', (n) => {
    let t = 'tokens:\n';
    for (let i = 0; i < n; i++) t += `  t${i}: {}\n`;
    return { text: t, json: { tokens: Object.fromEntries(Array.from({ length: n }, (_, i) => [`t${i}`, {}])) } };
  }],
  ['token keys (JSON), each token empty', (n) => {
    const json = { tokens: Object.fromEntries(Array.from({ length: n }, (_, i) => [`t${i}`, {}])) };
    return { text: JSON.stringify(json), source: 'tokend.json', json };
  }],
  ['keys in one nested mapping', (n) => {
    const keys = Array.from({ length: n }, (_, i) => `k${i}`);
    const t = `tokens:\n  orders:\n    tokenEndpoint: https://idp.example.com/token\n    clientId: c\n    clientSecret: s\n    grant: client_credentials\n    extra: {${keys.join(', ')}}\n`;
    return { text: t, json: { extra: Object.fromEntries(keys.map((k) => [k, null])) } };
  }],
  ['token keys, each an unset ${VAR}', (n) => {
    let t = 'tokens:\n';
    for (let i = 0; i < n; i++) t += `  t${i}: "\${UNSET_${i}}"\n`;
    return { text: t, json: { tokens: Object.fromEntries(Array.from({ length: n }, (_, i) => [`t${i}`, `\${UNSET_${i}}`])) } };
  }],
];

function cpuMs(fn) {
  const start = process.cpuUsage();
  fn();
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`parseConfig from ${dist}; ${ROUNDS} rounds, medians of CPU ms`);
console.log(['scenario', 'keys', 'parseConfig ms', 'JSON.parse ms', 'ratio', 'x2 keys →'].join(' | '));
for (const [name, make] of SCENARIOS) {
  let previous;
  for (const n of SIZES) {
    const { text, source, json } = make(n);
    const jsonText = JSON.stringify(json);
    const ours = [];
    const bare = [];
    let outcome = '';
    for (let r = 0; r < ROUNDS; r++) {
      bare.push(cpuMs(() => JSON.parse(jsonText)));
      ours.push(cpuMs(() => {
        try {
          parseConfig(text, { env: {}, source });
          outcome = 'ok';
        } catch (err) {
          outcome = err.problems ? `${err.problems.length} problems` : `${err.name}: ${err.message}`;
        }
      }));
    }
    const m = median(ours);
    const growth = previous === undefined ? '' : `x${(m / previous).toFixed(1)}`;
    console.log([name, n, m.toFixed(0), median(bare).toFixed(1), `x${(m / median(bare)).toFixed(0)}`, growth, outcome].join(' | '));
    previous = m;
  }
}
