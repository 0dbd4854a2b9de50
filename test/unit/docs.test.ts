/**
 * The README and docs/, checked as a reader would use them: the README stays short and its table
 * of contents works; every link and anchor resolves; the index lists every document; every config
 * key is documented; every path, npm script and CLI invocation they name exists; and the jq
 * filters they give work on a log that mixes JSON with other lines.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/k8s.js';
import { configFileSchema } from '../../src/config/schema.js';

/** The README's budget: an overview with a table of contents, the rest in docs/. */
const README_MAX_BYTES = 16_000;

const DOCS = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
const FILES = ['README.md', ...DOCS];
const text = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

/** The lines outside fenced code blocks, and those inside. */
function split(markdown: string): { prose: string[]; code: string[] } {
  const prose: string[] = [];
  const code: string[] = [];
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    else (fenced ? code : prose).push(line);
  }
  return { prose, code };
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens, -N for repeats. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of split(markdown).prose) {
    const m = /^#{1,6} (.*)$/.exec(line);
    if (m === null) continue;
    const base = (m[1] as string).toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Markdown links [text](target) outside code blocks. */
function links(markdown: string): string[] {
  return split(markdown).prose.flatMap((l) => [...l.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string));
}

/** Every key name in the configuration schema (zod), at any depth. */
function configKeys(schema: unknown, out = new Set<string>(), seen = new Set<unknown>()): Set<string> {
  const def = (schema as { _zod?: { def?: Record<string, any> } } | undefined)?._zod?.def;
  if (def === undefined || seen.has(schema)) return out;
  seen.add(schema);
  const inner = (s: unknown): void => void configKeys(s, out, seen);
  if (def.type === 'object') for (const [k, v] of Object.entries(def.shape as object)) (out.add(k), inner(v));
  else if (['optional', 'default', 'nullable', 'readonly', 'catch', 'prefault', 'nonoptional'].includes(def.type)) inner(def.innerType);
  else if (def.type === 'pipe') (inner(def.in), inner(def.out));
  else if (def.type === 'record') inner(def.valueType);
  else if (def.type === 'array') inner(def.element);
  else if (def.type === 'union') (def.options as unknown[]).forEach(inner);
  return out;
}

describe('README.md', () => {
  const readme = text('README.md');

  it(`stays short (under ${README_MAX_BYTES} bytes) and opens with a table of contents that covers every section`, () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(README_MAX_BYTES);
    const sections = split(readme).prose.filter((l) => /^## /.test(l)).map((l) => l.slice(3));
    expect(sections[0]).toBe('Contents');
    const toc = readme.slice(readme.indexOf('## Contents'), readme.indexOf('\n## ', readme.indexOf('## Contents') + 1));
    const targets = [...toc.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]);
    expect(targets).toEqual([...anchors(sections.slice(1).map((s) => `## ${s}`).join('\n'))]);
  });

  it('gives the two commands, the 5-minute path to a real IdP, the CLI from a clone, pretty-printing, and the one-seed rule', () => {
    for (const s of [
      'npm ci && npm run demo',
      'npm test',
      'npm run dev-idp',
      'npm ci && npm run build',
      'npx tokend',
      'npm run demo | npx pino-pretty',
      'DEMO_STORE=redis npm run demo',
      'Never point two stores at one refresh-token seed',
      'kind load docker-image',
      'k8s/components/sidecar',
      'k8s/monitoring',
    ]) {
      expect(readme, s).toContain(s);
    }
  });
});

describe('docs/', () => {
  it('has an index that links every document, and every document links back to something', () => {
    const index = links(text('docs/README.md')).map((l) => `docs/${l.split('#')[0]}`);
    for (const doc of DOCS.filter((d) => d !== 'docs/README.md')) expect(index, doc).toContain(doc);
    for (const doc of DOCS) expect(links(text(doc)).length, doc).toBeGreaterThan(0);
  });

  it('resolves every relative link and anchor', () => {
    for (const file of FILES) {
      for (const target of links(text(file))) {
        if (/^[a-z]+:/.test(target)) continue;
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const dest = path === '' ? file : relative(ROOT, resolve(ROOT, dirname(file), path));
        expect(existsSync(join(ROOT, dest)), `${file}: link to ${target} (${dest} does not exist)`).toBe(true);
        if (anchor !== undefined) expect([...anchors(text(dest))], `${file}: ${target}`).toContain(anchor);
      }
    }
  });

  it('documents every configuration key', () => {
    const all = FILES.map(text).join('\n');
    const keys = configKeys(configFileSchema);
    expect(keys.size).toBeGreaterThan(40);
    // In code formatting, alone or as part of a path (`verify.issuers[]`, `introspection.clientId`).
    for (const key of keys) expect(all, `config key ${key}`).toMatch(new RegExp(`\`[^\`\\n]*(?<!\\w)${key}(?!\\w)[^\`\\n]*\``));
  });

  it('names only paths, npm scripts and k8s directories that exist', () => {
    const scripts = Object.keys((JSON.parse(text('package.json')) as { scripts: Record<string, string> }).scripts);
    for (const file of FILES) {
      const body = text(file);
      for (const m of body.matchAll(/`((?:k8s|test|dev|bench|\.ci|\.github)\/[\w./-]*[\w/])`/g)) {
        expect(existsSync(join(ROOT, m[1] as string)), `${file}: ${m[1]}`).toBe(true);
      }
      for (const m of body.matchAll(/\bnpm run ([\w:-]+)/g)) expect(scripts, `${file}: npm run ${m[1]}`).toContain(m[1]);
    }
  });

  it('runs the CLI from a clone with `npx tokend`', () => {
    const version = (JSON.parse(text('package.json')) as { version: string }).version;
    const out = execFileSync('npx', ['--no-install', 'tokend', '--version'], { cwd: ROOT, encoding: 'utf8' });
    expect(out.trim()).toBe(version);
  });
});

describe('the jq filters in the docs', () => {
  const uses = FILES.flatMap((file) =>
    split(text(file)).code.flatMap((line) => {
      const m = /\| jq ((?:-\w+ )*)'([^']+)'/.exec(line);
      return m ? [{ file, flags: (m[1] as string).trim().split(/\s+/).filter(Boolean), filter: m[2] as string }] : [];
    }),
  );
  const mixed = [
    '{"level":"info","time":"2026-11-29T16:05:08.002Z","service":"tokend","token":"orders","event":"token.refreshed","expires_at":1795968318,"msg":"token refreshed"}',
    '(node:1) Warning: a line that is not JSON',
    '{"level":"warn","time":"2026-11-29T16:05:09.002Z","service":"tokend","token":"orders","event":"token.refresh_failed","error":{"code":"GRANT_TRANSIENT"},"permanent":false,"retry_in_ms":1730,"msg":"refresh failed; retrying"}',
    '{"level":"info","time":"2026-11-29T16:05:10.002Z","service":"tokend","msg":"no event on this line"}',
    '',
  ].join('\n');

  it('are there, and each reads raw lines and parses them with fromjson?', () => {
    expect(uses.length).toBeGreaterThanOrEqual(3);
    for (const u of uses) {
      expect(u.flags.join(' '), `${u.file}: ${u.filter}`).toMatch(/-R/);
      expect(u.filter, u.file).toMatch(/^fromjson\? \|/);
    }
  });

  it('work on a log that mixes JSON with other lines: no error, one JSON object per matching event', () => {
    const jq = spawnSync('jq', ['--version']);
    expect(jq.error, 'jq on the PATH (apt-get install jq; .ci/run installs it)').toBeUndefined();
    for (const u of uses) {
      const r = spawnSync('jq', [...u.flags, u.filter], { input: mixed, encoding: 'utf8' });
      expect(r.status, `${u.file}: jq ${u.filter}: ${r.stderr}`).toBe(0);
      const out = r.stdout.trim().split('\n').filter(Boolean);
      expect(out.length, `${u.file}: ${u.filter}`).toBeGreaterThan(0);
      for (const line of out) expect(() => JSON.parse(line)).not.toThrow();
      expect(r.stdout).not.toContain('Warning');
    }
  });
});
