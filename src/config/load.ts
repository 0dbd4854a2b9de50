/**
 * Reading the configuration: YAML or JSON text -> `${VAR}` interpolation -> command-line
 * overrides -> validation (schema.ts). `parseConfig` is pure; `loadConfigFile` only adds the read.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, type ScalarTag, type YAMLError } from 'yaml';
import { ConfigError } from '../errors.js';
import { checkConfig, formatPath, problemLines, type ConfigProblem } from './schema.js';
import type { Config } from './types.js';

/** The process environment, or a fake one in tests. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Values from the command line (`--listen`, `--metrics-listen`, `--log-level`) that replace the file's. */
export interface ConfigOverrides {
  readonly listen?: string | undefined;
  readonly metricsListen?: string | undefined;
  readonly logLevel?: string | undefined;
}

/** Options of parseConfig. `source` (a file name) only labels syntax errors and picks JSON by `.json`. */
export interface ParseConfigOptions {
  readonly env: Env;
  readonly source?: string | undefined;
  readonly overrides?: ConfigOverrides | undefined;
}

// ---------------------------------------------------------------------------------------------
// ${VAR} interpolation.

const REFERENCE_RE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([^]*))?$/;

/** Result of interpolating one string: the new value, or why it failed (never echoing the value). */
export type InterpolationResult = { ok: true; value: string } | { ok: false; problem: string };

/**
 * Replaces `${NAME}` with env.NAME and `${NAME:-default}` with env.NAME, or `default` when NAME
 * is unset or empty. `$$` is a literal `$` (so `$${NAME}` yields the text `${NAME}`); any other
 * `$` is kept as is. An unset NAME without a default, an unterminated `${` or a malformed
 * reference is a problem. The default text is taken literally (no nesting).
 */
export function interpolate(text: string, env: Env): InterpolationResult {
  if (!text.includes('$')) return { ok: true, value: text };
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch !== '$') {
      out += ch;
      i += 1;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next !== '{') {
      out += '$';
      i += 1;
      continue;
    }
    const end = text.indexOf('}', i + 2);
    if (end === -1) return { ok: false, problem: 'unterminated ${ (write $$ for a literal $)' };
    const m = REFERENCE_RE.exec(text.slice(i + 2, end));
    if (m === null) {
      return { ok: false, problem: 'expected ${NAME} or ${NAME:-default} (write $$ for a literal $)' };
    }
    const name = m[1] as string;
    const fallback = m[2];
    const value = env[name];
    if (fallback !== undefined) {
      out += value === undefined || value === '' ? fallback : value;
    } else if (value === undefined) {
      return { ok: false, problem: `environment variable ${name} is not set` };
    } else {
      out += value;
    }
    i = end + 1;
  }
  return { ok: true, value: out };
}

/**
 * Interpolates every string value (not keys) of a parsed document. A value that fails keeps its
 * raw text; its path goes into `failed` so the schema's complaint about the same field is dropped.
 */
function interpolateTree(
  node: unknown,
  path: PropertyKey[],
  env: Env,
  problems: ConfigProblem[],
  failed: Set<string>,
): unknown {
  if (typeof node === 'string') {
    const r = interpolate(node, env);
    if (r.ok) return r.value;
    const at = formatPath(path);
    problems.push({ path: at, message: r.problem });
    failed.add(at);
    return node;
  }
  if (Array.isArray(node)) return node.map((v, i) => interpolateTree(v, [...path, i], env, problems, failed));
  if (typeof node === 'object' && node !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      // defineProperty: a `__proto__` key must stay an (unknown) key, not replace the prototype.
      Object.defineProperty(out, k, {
        value: interpolateTree(v, [...path, k], env, problems, failed),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// YAML / JSON.

/**
 * YAML 1.2 reads an unquoted `mode: 0600` as the decimal number 600 (= 0o1130). Keeping
 * leading-zero integers as their text lets the mode parser read them as the octal users meant.
 */
const LEADING_ZERO_AS_TEXT: ScalarTag = {
  tag: 'tag:yaml.org,2002:str',
  default: true,
  test: /^0[0-9]+$/,
  resolve: (s: string) => s,
  identify: () => false,
};

/** A syntax message without quoted source text (which could be part of a secret). */
function yamlMessage(e: YAMLError): string {
  if (e.code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document';
  const first = e.message.split('\n')[0] ?? '';
  return first.replace(/:?\s*"(?:[^"\\]|\\.)*"/g, '').trim() || e.code;
}

function syntaxProblems(errors: readonly YAMLError[], lines: LineCounter, source: string | undefined): string[] {
  return errors.map((e) => {
    const { line, col } = lines.linePos(e.pos[0]);
    return `${source === undefined ? '' : `${source}: `}line ${line}, column ${col}: ${yamlMessage(e)}`;
  });
}

/**
 * Parses configuration text (YAML, or JSON, which is read strictly when `source` ends in .json),
 * interpolates `${VAR}` from opts.env, applies opts.overrides and validates.
 * Pure (no I/O). Throws ConfigError (code CONFIG_INVALID) listing every problem, one
 * `path.to.field: what was expected` line each; syntax errors give line and column instead.
 */
export function parseConfig(text: string, opts: ParseConfigOptions): Config {
  const lines = new LineCounter();
  const json = opts.source?.toLowerCase().endsWith('.json') ?? false;
  const doc = parseDocument(text, {
    schema: json ? 'json' : 'core',
    // `<<: *defaults` merge keys let many tokens share settings without repeating them.
    ...(json ? {} : { customTags: (tags) => [LEADING_ZERO_AS_TEXT, ...tags], merge: true }),
    prettyErrors: false,
    uniqueKeys: true,
    lineCounter: lines,
  });
  // Warnings (e.g. an unresolved !tag) would silently change a value's type: treat them as errors.
  const bad = [...doc.errors, ...doc.warnings];
  if (bad.length > 0) throw new ConfigError(syntaxProblems(bad, lines, opts.source));

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new ConfigError([`${opts.source ?? 'config'}: too many or circular YAML aliases`]);
  }

  const problems: ConfigProblem[] = [];
  const failed = new Set<string>();
  data = interpolateTree(data, [], opts.env, problems, failed);

  const o = opts.overrides;
  if (o !== undefined && typeof data === 'object' && data !== null && !Array.isArray(data)) {
    const d = data as Record<string, unknown>;
    if (o.listen !== undefined) d['listen'] = o.listen;
    if (o.metricsListen !== undefined) d['metricsListen'] = o.metricsListen;
    if (o.logLevel !== undefined) d['logLevel'] = o.logLevel;
  }

  const r = checkConfig(data);
  if (!r.ok) {
    const isFailed = (p: string): boolean =>
      [...failed].some((f) => p === f || p.startsWith(`${f}.`) || p.startsWith(`${f}[`));
    problems.push(...r.problems.filter((p) => !isFailed(p.path)));
  }
  if (problems.length > 0 || !r.ok) {
    // !r.ok with every schema problem filtered still fails: the interpolation problems explain it.
    throw new ConfigError(problemLines(problems));
  }
  return r.config;
}

/**
 * Reads and parses a configuration file (see parseConfig). Throws ConfigError naming the path
 * when the file cannot be read.
 */
export async function loadConfigFile(
  path: string,
  opts: { readonly env: Env; readonly overrides?: ConfigOverrides | undefined },
): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'permission denied'
          : `cannot be read${code ? ` (${code})` : ''}`;
    throw new ConfigError([`${path}: config file ${why}`]);
  }
  return parseConfig(text, { env: opts.env, source: path, overrides: opts.overrides });
}
