// Runs every bench/*.mjs file (except this one) in turn, each in its own node process, printing
// their output as it comes and a summary at the end. Exit code 1 if any benchmark failed.
//   npm run bench      # builds first, then runs this (bench/soak.mjs too with BENCH_SOAK=1)
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = path.basename(fileURLToPath(import.meta.url));
// The soak takes 10 minutes: only with BENCH_SOAK=1.
const files = readdirSync(here)
  .filter((f) => f.endsWith('.mjs') && f !== self && (f !== 'soak.mjs' || process.env.BENCH_SOAK === '1'))
  .sort();

const summary = [];
for (const file of files) {
  console.log(`\n## ${file}\n`);
  const started = Date.now();
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, file)], { stdio: 'inherit' });
    child.on('error', () => resolve(-1));
    child.on('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  summary.push({ file, code, seconds: (Date.now() - started) / 1000 });
}

console.log('\n## summary\n');
for (const s of summary) console.log(`${s.code === 0 ? 'ok  ' : 'FAIL'} ${s.file.padEnd(28)} ${s.seconds.toFixed(1)} s`);
if (summary.some((s) => s.code !== 0)) process.exitCode = 1;
