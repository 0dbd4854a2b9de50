// Bundles the compiled CLI (dist/, `npm run build` first) and every production dependency into
// one self-contained, minified directory, the one the Docker image ships:
//
//   OUT/dist/cli.js     the entry, plus the chunks it imports on demand (the Redis store, the
//                       verifier, the proxy...: what the configuration does not use is not loaded)
//   OUT/package.json    name, version (`tokend --version`) and "type": "module"
//
//   node scripts/bundle.mjs [OUT]      # OUT defaults to bundle/
//
// Why: one token's daemon on Node 24 is ~13 MiB smaller and listens in half the time bundled and
// minified (bench/footprint.mjs, docs/performance.md): node keeps every module's source text, and
// minified text is a fraction of it. `charset: 'ascii'` escapes the few non-ASCII characters
// (an ellipsis in a message, a dash): V8 keeps a source with any of them as two bytes per
// character, so each one would double its module's share. The output may import node's builtins only; anything else
// would be missing in the image (it has no node_modules), so the bundle fails instead.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.argv[2] ?? path.join(ROOT, 'bundle'));
const entry = path.join(ROOT, 'dist', 'cli.js');

const BUILTIN = new Set(builtinModules);
const isBuiltin = (id) => id.startsWith('node:') || BUILTIN.has(id) || BUILTIN.has(id.split('/')[0]);

rmSync(out, { recursive: true, force: true });
const result = await build({
  input: entry,
  platform: 'node',
  logLevel: 'warn',
  output: { dir: path.join(out, 'dist'), format: 'esm', minify: true, charset: 'ascii' },
});

const foreign = result.output.flatMap((chunk) => (chunk.type === 'chunk' ? chunk.imports : [])).filter((id) => !id.startsWith('.') && !path.isAbsolute(id) && !isBuiltin(id));
const chunkNames = new Set(result.output.map((c) => c.fileName));
const unresolved = foreign.filter((id) => !chunkNames.has(id));
if (unresolved.length > 0) {
  console.error(`bundle: the output imports modules that are not node builtins: ${[...new Set(unresolved)].join(', ')}`);
  process.exit(1);
}

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'package.json'), `${JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', private: true }, null, 2)}\n`);
const files = result.output.filter((c) => c.type === 'chunk');
const bytes = files.reduce((n, c) => n + Buffer.byteLength(c.code), 0);
console.log(`bundle: ${out} (${files.length} files, ${(bytes / 1024).toFixed(0)} KiB)`);
