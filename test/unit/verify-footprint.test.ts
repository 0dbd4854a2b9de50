import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// What a module loads at import time is its static (value) imports, followed transitively: type
// imports are erased by the compiler and `await import()` runs only when called. Reading the
// sources tells exactly what `import './verify/load.js'` or `'./verify/verifier.js'` pulls in.

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

const STATIC_IMPORT = /^\s*(?:import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm;

/** The value imports of one source file: relative ones as absolute .ts paths, packages by name. */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(STATIC_IMPORT)) {
    const [, typeOnly, clause = '', from, bare] = m;
    const spec = from ?? bare;
    if (spec === undefined || typeOnly) continue;
    // `import { type A, type B } from` is erased too.
    const named = /^\{([^}]*)\}$/.exec(clause.trim());
    if (named && named[1]!.split(',').every((s) => s.trim() === '' || s.trim().startsWith('type '))) continue;
    out.push(spec.startsWith('.') ? join(dirname(file), spec.replace(/\.js$/, '.ts')) : spec.split('/')[0]!.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
  }
  return out;
}

/** Every module and package loaded by importing entry (a path under src/). */
function loadedBy(entry: string): { modules: string[]; packages: string[] } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const queue = [join(SRC, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const dep of staticImports(file)) {
      if (dep.startsWith('/')) queue.push(dep);
      else if (!dep.startsWith('node:')) packages.add(dep);
    }
  }
  return { modules: [...seen].map((f) => f.slice(SRC.length + 1)).sort(), packages: [...packages].sort() };
}

describe('the verifier is loaded only where it is used', () => {
  it('importing verify/load.ts (loadVerifier) loads nothing else: no verifier, no jose, no keyv', () => {
    expect(loadedBy('verify/load.ts')).toEqual({ modules: ['verify/load.ts'], packages: [] });
  });

  it('the verifier itself does not load keyv: the introspection cache is imported on first use', () => {
    const { packages, modules } = loadedBy('verify/verifier.ts');
    expect(packages).toContain('jose');
    expect(packages).not.toContain('keyv');
    expect(modules).not.toContain('verify/introspection-cache.ts');
    expect(loadedBy('verify/introspection-cache.ts').packages).toEqual(['keyv']);
  });

  it('`tokend verify` without a verify section loads no verifier either', () => {
    expect(loadedBy('verify/cli.ts').packages).not.toContain('jose');
  });
});
