/**
 * The per-token `outputs` and `notify` keys (tokens.NAME.outputs, tokens.NAME.notify): schema,
 * relations between fields, the cross-token path check and the translation into resolved types.
 * Pure. What can only be checked on the machine (directories, template files) is checked when the
 * daemon prepares the outputs (src/output/prepare.ts).
 */
import { basename, join, resolve } from 'node:path';
import * as z from 'zod';
import { DEFAULT_FILE_MODE } from '../store/store.js';
import { isLoopbackHost } from '../net.js';
import { parseTemplate } from '../output/template.js';
import { asObj, duration, filePath, httpUrl, mode, oneOf, parseUrl, present, relations, report, type Ctx, type Obj } from './fields.js';

/** Output formats (see docs/outputs.md). */
export const OUTPUT_FORMATS = ['raw', 'json', 'header', 'env', 'template'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Signals a `notify.signal` may send: reload-style signals and polite stops; never SIGKILL or SIGSTOP. */
export const NOTIFY_SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGWINCH'] as const;
export type NotifySignal = (typeof NOTIFY_SIGNALS)[number];

/** Default variable name of the env format. */
export const DEFAULT_ENV_VARIABLE = 'TOKEN';
/** Default per-attempt timeout of an HTTP notification (ms). */
export const DEFAULT_NOTIFY_HTTP_TIMEOUT_MS = 5_000;
/** Default time an exec notification may run before it is killed (ms). */
export const DEFAULT_NOTIFY_EXEC_TIMEOUT_MS = 10_000;

/** Where an output template comes from. */
export type TemplateSource = { readonly kind: 'inline'; readonly text: string } | { readonly kind: 'file'; readonly path: string };

/** One resolved `outputs` entry. */
export interface OutputConfig {
  /** Absolute path of the file written. */
  readonly path: string;
  readonly format: OutputFormat;
  /** Permission bits, default 0o600 (0o640 allowed; never group write or any access for others). */
  readonly mode: number;
  /** env format: the variable name (default TOKEN); the type and expiry go in VARIABLE_TYPE, VARIABLE_EXPIRES_AT. */
  readonly variable?: string | undefined;
  /** template format: the template text or file. */
  readonly template?: TemplateSource | undefined;
}

/** `notify.http`: a POST to a loopback URL. */
export interface HttpNotifyConfig {
  readonly url: string;
  /** Per-attempt timeout (ms), default 5 000. */
  readonly timeoutMs: number;
}

/** `notify.signal`: a signal to the process whose pid is in pidFile (read at delivery time). */
export interface SignalNotifyConfig {
  readonly signal: NotifySignal;
  readonly pidFile: string;
}

/** `notify.exec`: a command run without a shell. */
export interface ExecNotifyConfig {
  /** Program and arguments. */
  readonly command: readonly string[];
  /** Killed after this long (ms), default 10 000. */
  readonly timeoutMs: number;
}

/** A token's resolved `notify` section: any of the three, at least one. */
export interface NotifyConfig {
  readonly http?: HttpNotifyConfig | undefined;
  readonly signal?: SignalNotifyConfig | undefined;
  readonly exec?: ExecNotifyConfig | undefined;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** An absolute path naming a file (not a directory: no trailing slash, no `.` or `..` as its last part). */
const outputPath = z.string().superRefine((s, ctx) => {
  if (!s.startsWith('/')) report(ctx, [], 'expected an absolute file path');
  else if (s.includes('\0')) report(ctx, [], 'must not contain a NUL character');
  else if (s.endsWith('/') || ['.', '..'].includes(basename(s))) report(ctx, [], 'expected a file path, not a directory');
});

function checkOutput(ctx: Ctx, o: Obj): void {
  const format = o['format'];
  if (format === 'template') {
    oneOf(ctx, o, 'template', 'templateFile', 'for format template');
  } else if (typeof format === 'string') {
    for (const k of ['template', 'templateFile']) if (present(o, k)) report(ctx, [k], 'only used with format template');
  }
  // The file store refuses an executable token file too (store/file.ts): a token is not a program.
  if (typeof o['mode'] === 'number' && (o['mode'] & 0o100) !== 0) report(ctx, ['mode'], 'must not be executable (use 0600 or 0640)');
  if (format !== 'env' && present(o, 'variable')) report(ctx, ['variable'], 'only used with format env');
  const text = o['template'];
  if (format === 'template' && typeof text === 'string') {
    const parsed = parseTemplate(text);
    if (!parsed.ok) for (const p of parsed.problems) report(ctx, ['template'], p);
  }
}

const outputSchema = z
  .strictObject({
    path: outputPath,
    format: z.enum(OUTPUT_FORMATS),
    mode: mode.optional(),
    variable: z.string().regex(ENV_NAME, 'expected a variable name like TOKEN ([A-Za-z_][A-Za-z0-9_]*, at most 64)').optional(),
    template: z.string().optional(),
    templateFile: filePath.optional(),
  })
  .superRefine(...relations(checkOutput));

/** A loopback http(s) URL: a notification never leaves the machine (nor the pod). */
const loopbackUrl = httpUrl.superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u !== undefined && !isLoopbackHost(u.hostname)) {
    report(ctx, [], 'must be a loopback URL (127.0.0.0/8, [::1] or localhost): notifications never leave the machine');
  }
});

const command = z
  .array(z.string().min(1, 'must not be empty').refine((s) => !s.includes('\0'), 'must not contain a NUL character'))
  .min(1, 'expected the program and its arguments: [cmd, arg, ...]');

const notifySchema = z
  .strictObject({
    http: z
      .strictObject({ url: loopbackUrl, timeout: duration(1, 60_000).default(DEFAULT_NOTIFY_HTTP_TIMEOUT_MS) })
      .optional(),
    signal: z.strictObject({ name: z.enum(NOTIFY_SIGNALS), pidFile: filePath }).optional(),
    // `exec: [cmd, args...]`, or `exec: {command: [...], timeout: 5s}` for another timeout.
    exec: z
      .preprocess(
        (v) => (Array.isArray(v) ? { command: v } : v),
        z.strictObject({ command, timeout: duration(1, 300_000).default(DEFAULT_NOTIFY_EXEC_TIMEOUT_MS) }),
      )
      .optional(),
  })
  .superRefine(
    ...relations((ctx, o) => {
      if (!present(o, 'http') && !present(o, 'signal') && !present(o, 'exec')) {
        report(ctx, [], 'expected at least one of http, signal, exec');
      }
    }),
  );

/** The schema fields tokenSchema adds for outputs and notifications. */
export const outputFields = {
  outputs: z.array(outputSchema).optional(),
  notify: notifySchema.optional(),
};

type OutputFile = z.output<typeof outputSchema>;
type NotifyFile = z.output<typeof notifySchema>;

/** Translates the parsed `outputs` list. */
export function toOutputs(outputs: readonly OutputFile[]): readonly OutputConfig[] {
  return outputs.map((o) => ({
    path: o.path,
    format: o.format,
    mode: o.mode ?? DEFAULT_FILE_MODE,
    variable: o.format === 'env' ? (o.variable ?? DEFAULT_ENV_VARIABLE) : undefined,
    template:
      o.template !== undefined
        ? { kind: 'inline', text: o.template }
        : o.templateFile !== undefined
          ? { kind: 'file', path: o.templateFile }
          : undefined,
  }));
}

/** Translates the parsed `notify` section. */
export function toNotify(n: NotifyFile): NotifyConfig {
  return {
    http: n.http && { url: n.http.url, timeoutMs: n.http.timeout },
    signal: n.signal && { signal: n.signal.name, pidFile: n.signal.pidFile },
    exec: n.exec && { command: n.exec.command, timeoutMs: n.exec.timeout },
  };
}

/**
 * Relations across tokens and with the store, for schema.ts's top-level check: two outputs may
 * not share a path (they would overwrite each other), and no output may replace one of the file
 * store's own files (DIR/NAME, DIR/NAME.json) or write into its state directory.
 */
export function checkOutputPaths(ctx: Ctx, c: Obj): void {
  const tokens = asObj(c['tokens']);
  if (tokens === undefined) return;
  const store = asObj(c['store']);
  const storeDir = store?.['type'] === 'file' && typeof store['dir'] === 'string' ? resolve(store['dir']) : undefined;
  const stateDir =
    storeDir === undefined ? undefined : typeof store?.['stateDir'] === 'string' ? resolve(store['stateDir']) : join(storeDir, '.state');
  const storeFiles = new Set<string>();
  if (storeDir !== undefined) {
    for (const name of Object.keys(tokens)) storeFiles.add(join(storeDir, name)).add(join(storeDir, `${name}.json`));
  }
  const seen = new Map<string, string>();
  for (const [name, t] of Object.entries(tokens)) {
    const outputs = asObj(t)?.['outputs'];
    if (!Array.isArray(outputs)) continue;
    outputs.forEach((o: unknown, i) => {
      const p = asObj(o)?.['path'];
      if (typeof p !== 'string' || !p.startsWith('/')) return;
      const at = ['tokens', name, 'outputs', i, 'path'];
      const abs = resolve(p);
      const where = `tokens.${name}.outputs[${i}]`;
      const first = seen.get(abs);
      if (first !== undefined) report(ctx, at, `same file as ${first}: two outputs would overwrite each other`);
      else seen.set(abs, where);
      if (storeFiles.has(abs)) report(ctx, at, 'is one of the file store\'s own files (DIR/NAME or DIR/NAME.json); choose another name');
      if (stateDir !== undefined && (abs === stateDir || abs.startsWith(`${stateDir}/`))) {
        report(ctx, at, 'is inside the file store\'s state directory, which holds refresh tokens');
      }
    });
  }
}
