/**
 * Reading the configuration: YAML or JSON text -> `${VAR}` interpolation -> command-line
 * overrides -> validation (schema.ts). `parseConfig` is pure; `loadConfigFile` only adds the read.
 *
 * The file is untrusted input: it is read up to MAX_CONFIG_BYTES and no further, and every step
 * after the read is linear in its size (the yaml library's own duplicate-key check and alias
 * resolution are quadratic, so duplicates are found here and aliases are capped before they run).
 */
import { open } from 'node:fs/promises';
import {
  Composer,
  isMap,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  Parser,
  type CST,
  type Document,
  type ScalarTag,
  type YAMLError,
} from 'yaml';
import { ConfigError } from '../errors.js';
import { readUpTo } from '../util/read-handle.js';
import { interpolateTree, isUnderFailedValue, type Env, type InterpolationFailures } from './interpolate.js';
import { checkConfig, problemLines } from './schema.js';
import type { Config } from './types.js';

export { interpolate, type Env, type InterpolationResult } from './interpolate.js';

/**
 * Largest configuration file read (bytes): 8 MiB, about 50,000 tokens each with its own secret
 * file (160 bytes a token), in line with MAX_YAML_TOKENS. A larger one is refused after reading
 * one byte more. (1 MiB refused the 10,000 tokens bench/scale.mjs starts.)
 */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
const MAX_CONFIG_TEXT = `${MAX_CONFIG_BYTES / (1024 * 1024)} MiB`;
/**
 * Most YAML aliases (`*name`, merge keys included) one configuration may hold. Each alias costs
 * the yaml library a scan over every anchor before it, and an alias of an alias multiplies the
 * data (billion laughs): 100 is far above what shared token defaults need.
 */
export const MAX_YAML_ALIASES = 100;
/**
 * Most YAML syntax tokens (keys, values, indicators, indentation: the lexer's output) in one
 * configuration. The yaml library's syntax tree takes up to about 1 KiB per token: 1 MiB of `{}, `
 * is a million tokens and took over 900 MB. A configuration with 40,000 tokens has about 320,000.
 */
export const MAX_YAML_TOKENS = 400_000;
/**
 * Deepest nesting of mappings and lists accepted. The yaml library composes recursively, so a
 * file of a few hundred kB of `[[[[…` would otherwise end in a stack overflow instead of a message.
 */
export const MAX_YAML_DEPTH = 64;

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

/** A syntax problem at a character offset of the text. */
interface SyntaxProblem {
  readonly offset: number;
  readonly message: string;
}

/** A syntax message without quoted source text (which could be part of a secret). */
function yamlMessage(e: YAMLError): string {
  if (e.code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document';
  const first = e.message.split('\n')[0] ?? '';
  return first.replace(/:?\s*"(?:[^"\\]|\\.)*"/g, '').trim() || e.code;
}

function syntaxLines(problems: readonly SyntaxProblem[], lines: LineCounter, source: string | undefined): string[] {
  return problems.map((p) => {
    const { line, col } = lines.linePos(p.offset);
    return `${source === undefined ? '' : `${source}: `}line ${line}, column ${col}: ${p.message}`;
  });
}

/**
 * Checks the syntax tree before it is composed: nesting depth and the number of aliases, in one
 * iterative pass (no recursion, so depth itself cannot overflow the stack here).
 */
function treeLimitProblems(tokens: readonly CST.Token[]): SyntaxProblem[] {
  // Children are pushed last-first, so they are visited in file order and a problem is reported
  // at the first place it occurs.
  const stack: Array<[CST.Token, number]> = tokens.map((t): [CST.Token, number] => [t, 0]).reverse();
  let aliases = 0;
  while (stack.length > 0) {
    const [token, depth] = stack.pop() as [CST.Token, number];
    if (token.type === 'alias' && ++aliases > MAX_YAML_ALIASES) {
      return [{ offset: token.offset, message: `more than ${MAX_YAML_ALIASES} YAML aliases` }];
    }
    if (token.type === 'document') {
      if (token.value) stack.push([token.value, depth]);
      continue;
    }
    if (token.type === 'block-scalar') continue;
    if (!('items' in token)) continue;
    if (depth + 1 > MAX_YAML_DEPTH) {
      return [{ offset: token.offset, message: `nested deeper than ${MAX_YAML_DEPTH} levels` }];
    }
    const items = token.items as CST.CollectionItem[];
    for (let i = items.length - 1; i >= 0; i--) {
      const { key, value } = items[i] as CST.CollectionItem;
      if (value) stack.push([value, depth + 1]);
      if (key) stack.push([key, depth + 1]);
    }
  }
  return [];
}

/**
 * Duplicate keys in any mapping, found with one Set per mapping (the yaml library's `uniqueKeys`
 * compares each key with every earlier one: 40,000 keys took seconds). Keys are compared as the
 * object keys they become, so `1:` and `"1":` collide here as they would in the parsed data.
 */
function duplicateKeyProblems(doc: Document.Parsed): SyntaxProblem[] {
  const problems: SyntaxProblem[] = [];
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isSeq(node)) {
      for (const item of node.items) stack.push(item);
    } else if (isMap(node)) {
      const seen = new Set<string>();
      for (const { key, value } of node.items) {
        stack.push(value);
        if (!isScalar(key)) {
          stack.push(key);
          continue;
        }
        // The merge key `<<` resolves to a symbol: it is not a data key.
        if (typeof key.value === 'symbol') continue;
        const name = String(key.value);
        if (seen.has(name)) problems.push({ offset: key.range?.[0] ?? 0, message: 'Map keys must be unique' });
        seen.add(name);
      }
    }
  }
  return problems;
}

/**
 * YAML (or strict JSON) text to plain data. Throws ConfigError with `line, column` problems for
 * syntax errors, excess depth or aliases, duplicate keys and alias bombs.
 */
function parseText(text: string, source: string | undefined): unknown {
  const lines = new LineCounter();
  const json = source?.toLowerCase().endsWith('.json') ?? false;
  // Counted before the syntax tree is built: the lexer keeps nothing, the tree keeps everything.
  let lexemes = 0;
  for (const _ of new Lexer().lex(text)) {
    if (++lexemes > MAX_YAML_TOKENS) {
      throw new ConfigError([`${source ?? 'config'}: more than ${MAX_YAML_TOKENS} YAML tokens (keys, values, punctuation)`]);
    }
  }
  const tokens = [...new Parser(lines.addNewLine).parse(text)];
  const limits = treeLimitProblems(tokens);
  if (limits.length > 0) throw new ConfigError(syntaxLines(limits, lines, source));

  const composer = new Composer({
    schema: json ? 'json' : 'core',
    // `<<: *defaults` merge keys let many tokens share settings without repeating them.
    ...(json ? {} : { customTags: (tags) => [LEADING_ZERO_AS_TEXT, ...tags], merge: true }),
    prettyErrors: false,
    // Checked by duplicateKeyProblems, in linear time.
    uniqueKeys: false,
  });
  const docs = [...composer.compose(tokens, true, text.length)];
  const doc = docs[0] as Document.Parsed;
  const problems: SyntaxProblem[] = [...doc.errors, ...duplicateKeyProblems(doc)].map((e) =>
    'pos' in e ? { offset: e.pos[0], message: yamlMessage(e) } : e,
  );
  if (docs.length > 1) problems.push({ offset: docs[1]?.range[0] ?? 0, message: 'the file holds more than one YAML document' });
  problems.sort((a, b) => a.offset - b.offset);
  // Warnings (e.g. an unresolved !tag) would silently change a value's type: treat them as errors.
  for (const w of doc.warnings) problems.push({ offset: w.pos[0], message: yamlMessage(w) });
  if (problems.length > 0) throw new ConfigError(syntaxLines(problems, lines, source));

  try {
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch {
    throw new ConfigError([`${source ?? 'config'}: too many or circular YAML aliases`]);
  }
}

/**
 * Parses configuration text (YAML, or JSON, which is read strictly when `source` ends in .json),
 * interpolates `${VAR}` from opts.env, applies opts.overrides and validates.
 * Pure (no I/O). Throws ConfigError (code CONFIG_INVALID) listing every problem, one
 * `path.to.field: what was expected` line each; syntax errors give line and column instead.
 */
export function parseConfig(text: string, opts: ParseConfigOptions): Config {
  const interpolation: InterpolationFailures = { problems: [], failed: new Set() };
  const data = interpolateTree(parseText(text, opts.source), opts.env, interpolation);

  const o = opts.overrides;
  if (o !== undefined && typeof data === 'object' && data !== null && !Array.isArray(data)) {
    const d = data as Record<string, unknown>;
    if (o.listen !== undefined) d['listen'] = o.listen;
    if (o.metricsListen !== undefined) d['metricsListen'] = o.metricsListen;
    if (o.logLevel !== undefined) d['logLevel'] = o.logLevel;
  }

  const r = checkConfig(data);
  const problems = [...interpolation.problems];
  if (!r.ok) {
    for (const p of r.problems) if (!isUnderFailedValue(p.path, interpolation.failed)) problems.push(p);
  }
  if (problems.length > 0 || !r.ok) {
    // !r.ok with every schema problem filtered still fails: the interpolation problems explain it.
    throw new ConfigError(problemLines(problems));
  }
  return r.config;
}

/**
 * Reads at most MAX_CONFIG_BYTES of path, as a stream (a device such as /dev/zero or a pipe is
 * never read past the limit). Throws ConfigError naming the path and the limit, or why the file
 * cannot be read.
 */
async function readConfigText(path: string): Promise<string> {
  let text: Buffer;
  try {
    const file = await open(path, 'r');
    try {
      // A buffer of the file's size, not of the limit: one token's configuration costs kilobytes.
      text = await readUpTo(file, (await file.stat()).size, MAX_CONFIG_BYTES);
    } finally {
      await file.close();
    }
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
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError([`config ${path}: larger than ${MAX_CONFIG_TEXT}`]);
  return text.toString('utf8');
}

/**
 * Reads and parses a configuration file of at most MAX_CONFIG_BYTES (see parseConfig). Throws
 * ConfigError naming the path when the file cannot be read or is larger.
 */
export async function loadConfigFile(
  path: string,
  opts: { readonly env: Env; readonly overrides?: ConfigOverrides | undefined },
): Promise<Config> {
  const text = await readConfigText(path);
  return parseConfig(text, { env: opts.env, source: path, overrides: opts.overrides });
}
