/**
 * The documented configuration file format (see /work/shared/contract.md), as a zod schema, and
 * its translation into the resolved `Config` of types.ts. Pure: no I/O, no environment access.
 *
 * Every problem is collected, not just the first: field checks run in the schema, and checks that
 * relate fields (issuer XOR tokenEndpoint, secret required by clientAuth, ...) run as refinements
 * that see the partially parsed object even when one of its fields is already wrong.
 * No message ever contains a configured value: a mistyped secret must not end up in a log.
 */
import * as z from 'zod';
import { LOG_LEVELS } from '../log.js';
import { isLoopbackHost } from '../net.js';
import { TOKEN_NAME_RE } from '../token.js';
import {
  asObj,
  bool,
  cron,
  DEFAULT_LISTEN,
  hostName,
  DEFAULT_RECONCILE_CRON,
  TOKEN_NAME_EXPECTED,
  listen,
  num,
  orList,
  parseListen,
  present,
  relations,
  report,
  type Ctx,
  type Obj,
} from './fields.js';
import { checkSubjectReferences } from './schema-federation.js';
import { checkOutputPaths } from './schema-output.js';
import { checkProxies, proxiesSchema, toProxy } from './schema-proxy.js';
import { storeSchema, toStore } from './schema-store.js';
import { tokenSchema, toToken } from './schema-token.js';
import { toVerifyIssuer, verifySchema } from './schema-verify.js';
import type { Config, ListenAddress } from './types.js';

export { parseFileMode, parseListen } from './fields.js';

function sameAddress(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  return a.port !== 0 && a.port === b.port;
}

function checkTop(ctx: Ctx, c: Obj): void {
  const l = c['listen'];
  if (typeof l === 'object' && l !== null && (l as ListenAddress).kind === 'tcp') {
    const host = (l as { host: string }).host;
    if (!isLoopbackHost(host) && c['allowRemote'] !== true) {
      report(ctx, ['listen'], `${host} is not a loopback address; set allowRemote: true to listen on it`);
    }
  }
  const store = c['store'];
  if (typeof store === 'object' && store !== null && (store as Obj)['type'] === 'redis' && typeof c['tokens'] === 'object' && c['tokens'] !== null) {
    for (const [name, t] of Object.entries(c['tokens'] as Obj)) {
      // Replicas share the token through Redis: one pod stopping would revoke it for all of them.
      if (typeof t === 'object' && t !== null && (t as Obj)['revokeOnShutdown'] === true) {
        report(ctx, ['tokens', name, 'revokeOnShutdown'], 'cannot be used with store type redis: one replica stopping would revoke the token every replica shares');
      }
    }
  }
  const m = c['metricsListen'];
  if (typeof l === 'object' && l !== null && typeof m === 'object' && m !== null && sameAddress(l as ListenAddress, m as ListenAddress)) {
    report(ctx, ['metricsListen'], 'must differ from listen');
  }
  const tokens = c['tokens'];
  const noTokens =
    tokens === undefined || (typeof tokens === 'object' && tokens !== null && Object.keys(tokens).length === 0);
  if (noTokens && !present(c, 'verify')) {
    report(ctx, ['tokens'], 'at least one token is required (unless a verify section is given)');
  }
  const v = c['verify'];
  const issuers = typeof v === 'object' && v !== null ? (v as Obj)['issuers'] : undefined;
  if (Array.isArray(issuers)) {
    const seen = new Set<string>();
    issuers.forEach((it: unknown, i) => {
      const iss = typeof it === 'object' && it !== null ? (it as Obj)['issuer'] : undefined;
      if (typeof iss !== 'string') return;
      if (seen.has(iss)) report(ctx, ['verify', 'issuers', i, 'issuer'], 'duplicate issuer');
      seen.add(iss);
    });
  }
  checkOutputPaths(ctx, c);
  checkSubjectReferences(ctx, c['tokens']);
}

// ---------------------------------------------------------------------------------------------
// The schema.

/** The configuration file as written, before defaults that depend on other fields are applied. */
export const configFileSchema = z
  .strictObject({
    listen: listen.default(() => parseListen(DEFAULT_LISTEN)),
    allowRemote: bool.default(false),
    // A metrics-only listener serves no token, so it may bind a pod address without allowRemote.
    metricsListen: listen.optional(),
    // Host names /v1/ accepts besides loopback ones (DNS-rebinding defence; see docs/endpoint.md).
    allowedHosts: z.array(hostName).optional(),
    // false: aggregate token metrics only, for very large configurations.
    metricsPerToken: bool.optional(),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    reconcile: cron.default(DEFAULT_RECONCILE_CRON),
    // Max concurrent grants per IdP, shared by all tokens (src/oauth/limiter.ts).
    // Absent: DEFAULT_IDP_CONCURRENCY (4), applied by createIdpRegistry.
    idpConcurrency: num(z.number().int('expected a whole number from 1 to 64').min(1).max(64)).optional(),
    store: storeSchema.default(() => ({ type: 'memory' as const })),
    // Names are checked in checkConfig, so that a token with a bad name still gets its fields checked.
    tokens: z.record(z.string(), tokenSchema).optional(),
    verify: verifySchema.optional(),
    proxies: proxiesSchema.optional(),
  })
  .superRefine(...relations(checkTop))
  .superRefine(...relations(checkProxies));

/** The parsed file, before translation into Config. */
export type ConfigFile = z.output<typeof configFileSchema>;

// ---------------------------------------------------------------------------------------------
// Problems and translation.

/** One problem found in a configuration: a dotted path (`tokens.orders.grant`) and what was expected. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** Formats a zod path as `tokens.orders.clientId` / `verify.issuers[0].audience`; `config` for the root. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? 'config' : out;
}

const EXPECTED_TYPE: Record<string, string> = {
  string: 'expected a string',
  number: 'expected a number',
  boolean: 'expected true or false',
  object: 'expected a mapping',
  record: 'expected a mapping',
  array: 'expected a list',
};

/** Wording for zod's own issues; values are never included (they may be secrets). */
const errorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'required';
      const what = EXPECTED_TYPE[iss.expected] ?? `expected ${iss.expected}`;
      return iss.input === null ? `${what} (the value is empty)` : what;
    }
    case 'invalid_value':
      return `expected ${orList(iss.values.map(String))}`;
    case 'too_small':
      if (iss.origin === 'array') return 'expected at least one entry';
      if (iss.origin === 'string') return 'must not be empty';
      return `expected at least ${String(iss.minimum)}`;
    case 'too_big':
      return `expected at most ${String(iss.maximum)}`;
    default:
      return 'invalid value';
  }
};

function toProblems(issues: readonly z.core.$ZodIssue[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) out.push({ path: formatPath([...iss.path, key]), message: 'unknown key' });
    } else if (iss.code === 'invalid_key') {
      out.push({ path: formatPath(iss.path), message: iss.issues[0]?.message ?? 'invalid key' });
    } else {
      out.push({ path: formatPath(iss.path), message: iss.message });
    }
  }
  return out;
}

/** Translates a successfully parsed file into the resolved Config (defaults that depend on other fields). */
function toConfig(f: ConfigFile): Config {
  return {
    listen: f.listen,
    allowRemote: f.allowRemote,
    metricsListen: f.metricsListen,
    // Only when given, so that configurations without them resolve exactly as before.
    ...(f.allowedHosts !== undefined && { allowedHosts: f.allowedHosts }),
    ...(f.metricsPerToken !== undefined && { metricsPerToken: f.metricsPerToken }),
    store: toStore(f.store),
    tokens: Object.entries(f.tokens ?? {}).map(([name, t]) => toToken(name, t)),
    verify: f.verify === undefined ? undefined : { issuers: f.verify.issuers.map(toVerifyIssuer) },
    logLevel: f.logLevel,
    reconcileCron: f.reconcile,
    ...(f.idpConcurrency !== undefined ? { idpConcurrency: f.idpConcurrency } : {}),
    // Only when configured, so a config without proxies resolves exactly as before.
    ...(f.proxies === undefined ? {} : { proxies: f.proxies.map(toProxy) }),
  };
}

/** Result of checkConfig: the Config, or every problem found. */
export type CheckResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/**
 * Validates an already parsed and interpolated document (plain JSON-like data) and resolves it.
 * Pure. Returns every problem rather than throwing, so callers can merge them with their own.
 */
export function checkConfig(data: unknown): CheckResult {
  const r = configFileSchema.safeParse(data, { error: errorMap });
  const problems = [...tokenNameProblems(data), ...(r.success ? [] : toProblems(r.error.issues))];
  if (!r.success || problems.length > 0) return { ok: false, problems };
  return { ok: true, config: toConfig(r.data) };
}

function tokenNameProblems(data: unknown): ConfigProblem[] {
  const tokens = asObj(asObj(data)?.['tokens']);
  const problems: ConfigProblem[] = [];
  for (const name of Object.keys(tokens ?? {})) {
    if (!TOKEN_NAME_RE.test(name)) problems.push({ path: formatPath(['tokens', name]), message: TOKEN_NAME_EXPECTED });
    // The file store writes NAME and NAME.json side by side: token x.json would collide with x's metadata.
    else if (name.endsWith('.json')) problems.push({ path: formatPath(['tokens', name]), message: 'token names must not end in .json' });
  }
  return problems;
}

/** Formats problems as `path: message` lines, without duplicates, in the order found. */
export function problemLines(problems: readonly ConfigProblem[]): string[] {
  return [...new Set(problems.map((p) => `${p.path}: ${p.message}`))];
}
