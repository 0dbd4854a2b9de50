/**
 * `${VAR}` interpolation of configuration values. Pure: the environment is passed in.
 * Linear in the size of the document: every string is scanned once, every path is formatted only
 * when it has a problem, and "is this schema problem under a failed value" is a walk up one path.
 */
import { formatPath, type ConfigProblem } from './schema.js';

/** The process environment, or a fake one in tests. */
export type Env = Readonly<Record<string, string | undefined>>;

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
    const dollar = text.indexOf('$', i);
    if (dollar === -1) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, dollar);
    const next = text[dollar + 1];
    if (next !== '{') {
      // `$$` is one literal `$`; a lone `$` stays as it is.
      out += '$';
      i = dollar + (next === '$' ? 2 : 1);
      continue;
    }
    const end = text.indexOf('}', dollar + 2);
    if (end === -1) return { ok: false, problem: 'unterminated ${ (write $$ for a literal $)' };
    const m = REFERENCE_RE.exec(text.slice(dollar + 2, end));
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

/** What interpolateTree found wrong: one problem per failed value, and the paths of those values. */
export interface InterpolationFailures {
  readonly problems: ConfigProblem[];
  /** Formatted paths (`tokens.orders.clientId`) of the values that failed. */
  readonly failed: Set<string>;
}

/**
 * Interpolates every string value (not keys) of a parsed document. A value that fails keeps its
 * raw text; its problem and path are recorded in `out` so that the schema's complaint about the
 * same field can be dropped (see isUnderFailedValue).
 */
export function interpolateTree(node: unknown, env: Env, out: InterpolationFailures): unknown {
  return walk(node, [], env, out);
}

function walk(node: unknown, path: PropertyKey[], env: Env, out: InterpolationFailures): unknown {
  if (typeof node === 'string') {
    const r = interpolate(node, env);
    if (r.ok) return r.value;
    const at = formatPath(path);
    out.problems.push({ path: at, message: r.problem });
    out.failed.add(at);
    return node;
  }
  if (typeof node !== 'object' || node === null) return node;
  // One path array for the whole walk (push/pop), not a copy per node: linear in the document.
  if (Array.isArray(node)) {
    const copy = new Array<unknown>(node.length);
    for (let i = 0; i < node.length; i++) {
      path.push(i);
      copy[i] = walk(node[i], path, env, out);
      path.pop();
    }
    return copy;
  }
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    path.push(k);
    // defineProperty: a `__proto__` key must stay an (unknown) key, not replace the prototype.
    Object.defineProperty(copy, k, { value: walk(v, path, env, out), enumerable: true, writable: true, configurable: true });
    path.pop();
  }
  return copy;
}

/**
 * True when problemPath is one of the failed paths or lies under one (`a.b` covers `a.b.c` and
 * `a.b[0]`). Looks up each prefix of problemPath in the set: linear in the path's length, not in
 * the number of failures (checking every failure for every problem was quadratic).
 */
export function isUnderFailedValue(problemPath: string, failed: ReadonlySet<string>): boolean {
  if (failed.size === 0) return false;
  if (failed.has(problemPath)) return true;
  for (let i = 1; i < problemPath.length; i++) {
    const ch = problemPath[i];
    if ((ch === '.' || ch === '[') && failed.has(problemPath.slice(0, i))) return true;
  }
  return false;
}
