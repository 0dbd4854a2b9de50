#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { TokendError, ConfigError } from './errors.js';
import type { Config } from './config/types.js';
import { sidecarGet, DEFAULT_URL } from './client.js';
import { installFetchClasses } from './util/fetch-classes.js';
import { collectStartupGarbage } from './util/startup-gc.js';
// The daemon, grants and verifier are imported lazily by the commands that need them: `tokend
// health` runs as a Kubernetes exec probe every few seconds and must start small and fast.

/** Exit codes, in one place (contract: 0 ok, 1 fatal / IdP unreachable / invalid, 2 bad config). */
export const EXIT = { ok: 0, failure: 1, config: 2 } as const;

const VERSION = readVersion();

interface ConfigOpts {
  config?: string;
  listen?: string;
  metricsListen?: string;
  logLevel?: string;
}

interface RunOpts extends ConfigOpts {
  once?: boolean;
  timeout?: string;
}

/** Maps any error to an exit code and one clear stderr message, never a stack trace or secret. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError || (err instanceof TokendError && err.code === 'CONFIG_INVALID')) return EXIT.config;
  return EXIT.failure;
}

function report(err: unknown): void {
  if (err instanceof ConfigError) {
    process.stderr.write(`tokend: invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`);
  } else if (err instanceof TokendError) {
    process.stderr.write(`tokend: ${err.message} (${err.code})\n`);
  } else if (err instanceof Error) {
    process.stderr.write(`tokend: ${err.message}\n`);
  } else {
    process.stderr.write(`tokend: ${String(err)}\n`);
  }
}

async function loadConfig(opts: ConfigOpts): Promise<Config> {
  const path = opts.config ?? process.env.TOKEND_CONFIG;
  if (!path) throw new ConfigError(['--config: required (or set TOKEND_CONFIG)']);
  const overrides: { listen?: string; metricsListen?: string; logLevel?: string } = {};
  if (opts.listen !== undefined) overrides.listen = opts.listen;
  if (opts.metricsListen !== undefined) overrides.metricsListen = opts.metricsListen;
  if (opts.logLevel !== undefined) overrides.logLevel = opts.logLevel;
  const { loadConfigFile } = await import('./config/load.js');
  const { checkSecretFiles } = await import('./config/secrets.js');
  const config = await loadConfigFile(path, { env: process.env, overrides });
  const problems = await checkSecretFiles(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * Writes a failure of `run` as one JSON log line on stdout too (level, `event: daemon.failed`,
 * `error: {type, code, message}`), so that log pipelines (`kubectl logs | jq`) see why tokend
 * stopped; stderr keeps its plain message. Never a secret: errors carry none in their messages.
 */
async function logRunFailure(level: 'fatal' | 'error', err: unknown, msg: string): Promise<void> {
  const { createLogger, EVENTS, errorSummary } = await import('./log.js');
  const error = errorSummary(err);
  if (err instanceof ConfigError) error.problems = err.problems;
  createLogger('info', { write: (line: string) => void process.stdout.write(line) })[level]({ event: EVENTS.daemonFailed, error }, msg);
}

async function cmdRun(opts: RunOpts): Promise<number> {
  try {
    return await runDaemon(opts);
  } catch (err) {
    await logRunFailure('fatal', err, 'tokend could not start');
    throw err;
  }
}

/** Starts the daemon; resolves with the exit code once a signal has stopped it. Throws when it cannot start. */
async function runDaemon(opts: RunOpts): Promise<number> {
  const config = await loadConfig(opts);
  if (opts.once) return cmdRunOnce(config, opts);
  // Signal handlers go in before start-up, so a SIGTERM during the first grants still stops cleanly.
  let signalled: NodeJS.Signals | undefined;
  let onStop: (() => void) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    // A second signal means the operator wants out now.
    if (signalled) process.exit(EXIT.failure);
    signalled = sig;
    // Bound shutdown, never forever, but long enough for what a clean stop may have to finish:
    // a first grant still starting (discovery + grant), a refresh_token grant in flight (never
    // cut: the IdP may have rotated), revocations on shutdown (two calls), each within `timeout`.
    setTimeout(() => {
      process.stderr.write('tokend: shutdown took too long; exiting\n');
      // What stdout can still take in a moment, then out.
      void import('./log.js')
        .then(({ flushStdout }) => flushStdout(500))
        .finally(() => process.exit(EXIT.failure));
    }, shutdownBoundMs(config)).unref();
    onStop?.();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP (the default would kill the process without a word): re-read the secret files now.
  let onReload: (() => void) | undefined;
  process.on('SIGHUP', () => onReload?.());
  const { startDaemon } = await import('./daemon.js');
  const daemon = await startDaemon(config);
  onReload = () => daemon.reload();
  // Start-up is over once every token had its first grant: its garbage goes (util/startup-gc.ts).
  void daemon.started.then(collectStartupGarbage);
  return new Promise<number>((resolve) => {
    onStop = (): void => {
      daemon.logger.info({ signal: signalled }, 'signal received');
      daemon.stop().then(
        () => resolve(EXIT.ok),
        async (err: unknown) => {
          await logRunFailure('error', err, 'tokend did not stop cleanly');
          report(err);
          resolve(EXIT.failure);
        },
      );
    };
    if (signalled) onStop();
  });
}

/** `run --once`: every token obtained and written, then exit 0; 1 naming the tokens that failed. */
async function cmdRunOnce(config: Config, opts: RunOpts): Promise<number> {
  const { parseDuration } = await import('./config/duration.js');
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(opts.timeout ?? '30s');
  } catch (err) {
    throw new ConfigError([`--timeout: ${(err as Error).message}`]);
  }
  const { createLogger } = await import('./log.js');
  const { runOnce } = await import('./once.js');
  const logger = createLogger(config.logLevel);
  const result = await runOnce(config, { logger, timeoutMs });
  if (result.failed.length === 0) return EXIT.ok;
  for (const f of result.failed) process.stderr.write(`tokend: ${f.name}: no token (${f.reason})${f.lastError ? `: ${f.lastError}` : ''}\n`);
  return EXIT.failure;
}

/** The longest a clean stop may take (ms): 8 s, or more when slow IdP calls may still be due. */
export function shutdownBoundMs(config: Config): number {
  const calls = (t: Config['tokens'][number]): number => (t.revokeOnShutdown ? 4 : 2) * t.timeoutMs;
  return Math.max(8_000, ...config.tokens.map(calls)) + 2_000;
}

async function cmdCheck(opts: ConfigOpts & { online?: boolean }): Promise<number> {
  const config = await loadConfig(opts);
  const { checkConfigOnline } = await import('./check.js');
  const results = await checkConfigOnline(config, opts.online === true);
  const failed = results.filter((r) => !r.ok).length;
  const lines = results.map((r) => `  ${r.ok ? 'ok  ' : 'FAIL'} ${r.text}`);
  const what = `${config.tokens.length} token(s), store ${config.store.type}, listen ${describeListen(config)}`;
  // "config ok" only when everything checked passed.
  lines.unshift(failed === 0 ? `config ok: ${what}` : `config valid, but ${failed} check(s) failed: ${what}`);
  process.stdout.write(lines.join('\n') + '\n');
  return failed > 0 ? EXIT.failure : EXIT.ok;
}

function describeListen(config: Config): string {
  return config.listen.kind === 'unix' ? `unix:${config.listen.path}` : `${config.listen.host}:${config.listen.port}`;
}

async function cmdGet(name: string, opts: { url?: string; minTtl?: string }): Promise<number> {
  const base = opts.url ?? process.env.TOKEND_URL ?? DEFAULT_URL;
  let path = `/v1/token/${encodeURIComponent(name)}`;
  if (opts.minTtl !== undefined) path += `?min_ttl=${encodeURIComponent(opts.minTtl)}`;
  // With min_ttl the sidecar may refresh first: allow for the IdP's own timeout.
  const res = await sidecarGet(base, path, { accept: 'text/plain', timeoutMs: opts.minTtl !== undefined ? 30_000 : 5_000 });
  if (res.status === 200) {
    process.stdout.write(res.body + '\n');
    return EXIT.ok;
  }
  let message = `HTTP ${res.status}`;
  try {
    const parsed = JSON.parse(res.body) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === 'string') message += ` ${parsed.error}`;
    if (typeof parsed.message === 'string') message += `: ${parsed.message}`;
  } catch {
    // Not JSON: the status says enough.
  }
  process.stderr.write(`tokend: no valid token for ${name}: ${message}\n`);
  return EXIT.failure;
}

async function cmdHealth(opts: { url?: string; ready?: boolean; wait?: string }): Promise<number> {
  const base = opts.url ?? process.env.TOKEND_URL ?? DEFAULT_URL;
  const path = opts.ready ? '/readyz' : '/healthz';
  let waitMs = 0;
  if (opts.wait !== undefined) {
    const seconds = Number(opts.wait);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(opts.wait) || !Number.isFinite(seconds) || seconds > 3600) {
      throw new ConfigError([`--wait: expected seconds between 0 and 3600, got ${JSON.stringify(opts.wait.slice(0, 20))}`]);
    }
    waitMs = seconds * 1000;
  }
  const deadline = Date.now() + waitMs;
  let last = '';
  for (;;) {
    try {
      const res = await sidecarGet(base, path, { timeoutMs: 2_000 });
      if (res.status === 200) return EXIT.ok;
      last = `HTTP ${res.status} ${res.body.slice(0, 500)}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    // --wait polls (as a postStart hook holding the application back does); without it, one try.
    if (Date.now() + 500 > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  process.stderr.write(`tokend: ${opts.ready ? 'not ready' : 'not healthy'}: ${last}\n`);
  return EXIT.failure;
}

async function cmdVerify(opts: ConfigOpts): Promise<number> {
  const config = await loadConfig(opts);
  const input = readFileSync(0, 'utf8').trim();
  const { runVerifyCommand } = await import('./verify/cli.js');
  return runVerifyCommand(config, input, (s) => process.stdout.write(s + '\n'));
}

async function cmdRevoke(name: string, opts: ConfigOpts): Promise<number> {
  const config = await loadConfig(opts);
  const tc = config.tokens.find((t) => t.name === name);
  if (!tc) throw new ConfigError([`NAME: no token named ${JSON.stringify(name.slice(0, 64))} in the configuration`]);
  const { revokeToken } = await import('./revoke.js');
  const summary = await revokeToken(config, tc);
  process.stdout.write(summary + '\n');
  return EXIT.ok;
}

/** Builds the commander program; `run` is injected so every command resolves to an exit code. */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command();
  const wrap =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      try {
        setExit(await fn(...args));
      } catch (err) {
        report(err);
        setExit(exitCodeFor(err));
      }
    };
  const withConfig = (cmd: Command): Command =>
    cmd
      .option('-c, --config <file>', 'configuration file (YAML or JSON); default $TOKEND_CONFIG')
      .option('--listen <addr>', 'override listen (host:port or unix:/path)')
      .option('--metrics-listen <addr>', 'override metricsListen: /healthz, /readyz and /metrics for probes and scrapes (host:port or unix:/path)')
      .option('--log-level <level>', 'override logLevel (fatal|error|warn|info|debug|trace)');

  program
    .name('tokend')
    .description('OAuth2/OIDC token sidecar: obtains, refreshes, stores and serves access tokens')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError();

  withConfig(
    program
      .command('run')
      .description('run the daemon until SIGTERM/SIGINT (or, with --once, obtain every token, write it and exit)')
      .option('--once', 'obtain (or adopt) every token, write the store and outputs, then exit 0; 1 if a token failed')
      .option('--timeout <duration>', 'with --once: how long the tokens have to become ready (default 30s)'),
  ).action(wrap((o: RunOpts) => cmdRun(o)));
  withConfig(
    program
      .command('check')
      .description('validate config, read secret files, run OIDC discovery for each token')
      .option('--online', 'also connect to the store and perform one client_credentials grant per such token'),
  ).action(wrap((o: ConfigOpts & { online?: boolean }) => cmdCheck(o)));
  program
    .command('get')
    .description('print the current raw access token from a running sidecar')
    .argument('<name>', 'token name')
    .option('--url <url>', `sidecar URL (http://host:port or unix:/path); default $TOKEND_URL or ${DEFAULT_URL}`)
    .option('--min-ttl <seconds>', 'ask the sidecar to refresh first if fewer than this many seconds remain')
    .action(wrap((name: string, o: { url?: string; minTtl?: string }) => cmdGet(name, o)));
  program
    .command('health')
    .description('probe a running sidecar: exit 0 when /healthz (or /readyz with --ready) answers 200')
    .option('--ready', 'check readiness (every token valid) instead of liveness')
    .option('--url <url>', `sidecar URL; default $TOKEND_URL or ${DEFAULT_URL}`)
    .option('--wait <seconds>', 'keep asking every 0.5 s until it answers 200 or this many seconds pass')
    .action(wrap((o: { url?: string; ready?: boolean; wait?: string }) => cmdHealth(o)));
  withConfig(program.command('verify').description('verify a token read from stdin; exit 0 valid, 1 invalid')).action(
    wrap((o: ConfigOpts) => cmdVerify(o)),
  );
  withConfig(
    program
      .command('revoke')
      .description("RFC 7009: revoke NAME's refresh token (and access token), then remove the stored copies")
      .argument('<name>', 'token name'),
  ).action(wrap((name: string, o: ConfigOpts) => cmdRevoke(name, o)));
  return program;
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

async function main(): Promise<void> {
  // Before any command runs: openid-client's first `new Headers` would otherwise load undici.
  installFetchClasses();
  let code: number = EXIT.ok;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exitCode 0; usage errors with 1 (commander's own message already printed).
      code = err.exitCode === 0 ? EXIT.ok : EXIT.config;
    } else {
      report(err);
      code = exitCodeFor(err);
    }
  }
  process.exitCode = code;
  // A clean `run` stop must not wait for stray handles (keep-alive sockets, Redis reconnects), but
  // lets stdout take the last log lines first, for a bounded time (logs are written asynchronously).
  if (process.argv[2] === 'run' || process.argv[2] === 'check') {
    const { flushStdout } = await import('./log.js');
    await flushStdout(1_000);
    process.exit(code);
  }
}

void main();
