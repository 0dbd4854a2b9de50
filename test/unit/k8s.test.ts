/**
 * The Kubernetes manifests in k8s/, checked offline: every overlay renders with `kubectl kustomize`,
 * every object validates against the Kubernetes API schemas (kubernetes-models) with no unknown
 * fields, the tokend config in each ConfigMap passes tokend's own parser, the probes run commands
 * the built CLI has against the address the daemon listens on, and the security settings hold.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli } from '../support/daemon.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const K8S = join(ROOT, 'k8s');
const CLI = join(ROOT, 'dist/cli.js');
const run = promisify(execFile);

/**
 * The daemon's footprint, measured on this machine with Node 24 (README, "Security
 * settings and resources"): RSS of `node dist/cli.js run` with two 10-second tokens (client
 * credentials and a rotating refresh token) against the dev IdP over 5 minutes, steady after GC
 * and peak; and the peak RSS of one probe process (`node dist/cli.js health --ready`), which runs
 * inside the same container and so counts against its memory limit. MiB. (Each RSS includes
 * ~60 MiB of shared node binary pages, so adding two of them overestimates: on purpose.)
 */
const MEASURED = { daemonSteadyRssMiB: 110, daemonPeakRssMiB: 131, probeRssMiB: 100 };

// ---------------------------------------------------------------------------------------------
// Rendering and the objects in it.

type Obj = Record<string, any>;

interface Rendered {
  readonly name: string;
  readonly objects: Obj[];
}

function render(dir: string): Obj[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`${dir}: ${d.errors[0]?.message}`);
    return d.toJS() as Obj;
  });
}

function find(objects: readonly Obj[], kind: string, name?: string): Obj[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
}

function one(objects: readonly Obj[], kind: string, name?: string): Obj {
  const found = find(objects, kind, name);
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0] as Obj;
}

/** The application Deployment: the one that carries tokend. */
function appDeployment(objects: readonly Obj[]): Obj {
  return one(objects, 'Deployment', 'orders-app');
}

function podSpec(deployment: Obj): Obj {
  return deployment.spec.template.spec;
}

function allContainers(pod: Obj): Obj[] {
  return [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
}

function tokendContainer(pod: Obj): Obj {
  const found = allContainers(pod).filter((c) => c.name === 'tokend');
  expect(found, 'one tokend container').toHaveLength(1);
  return found[0] as Obj;
}

function appContainer(pod: Obj): Obj {
  const found = (pod.containers ?? []).filter((c: Obj) => c.name === 'app');
  expect(found, 'one app container').toHaveLength(1);
  return found[0] as Obj;
}

function workloads(objects: readonly Obj[]): Obj[] {
  return objects.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind));
}

/** The tokend config file text from the ConfigMap mounted into tokend, and where it is mounted. */
function tokendConfigText(objects: readonly Obj[]): { text: string; path: string } {
  const pod = podSpec(appDeployment(objects));
  const tokend = tokendContainer(pod);
  const env = Object.fromEntries((tokend.env ?? []).map((e: Obj) => [e.name, e.value]));
  const path = env.TOKEND_CONFIG ?? DOCKERFILE.env.TOKEND_CONFIG;
  const mount = (tokend.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`));
  expect(mount, `a volume mounted above ${path}`).toBeDefined();
  const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name);
  expect(volume?.configMap, `volume ${mount!.name} is a ConfigMap`).toBeDefined();
  const cm = one(objects, 'ConfigMap', volume!.configMap.name);
  const key = posix.relative(mount!.mountPath, path);
  expect(cm.data, `ConfigMap ${cm.metadata.name} has ${key}`).toHaveProperty([key]);
  return { text: cm.data[key] as string, path };
}

// ---------------------------------------------------------------------------------------------
// Schema validation: kubernetes-models for types and formats, plus its declaration files for
// unknown fields (the models accept any extra property; the API server's strict field validation,
// kubectl's default, does not, and a misspelt `readOnlyRootFileSystem` would be a silent no-op).

const MODELS: Record<string, Record<string, any>> = {
  v1: core,
  'apps/v1': apps,
  'networking.k8s.io/v1': networking,
};

function modelFor(o: Obj): { validate(): void } {
  const Model = MODELS[o.apiVersion]?.[o.kind];
  if (typeof Model !== 'function') throw new Error(`no kubernetes-models class for ${o.apiVersion} ${o.kind}: add it to MODELS`);
  return new Model(o);
}

const MODELS_DIR = join(ROOT, 'node_modules/kubernetes-models');
const NODE_MODULES = join(ROOT, 'node_modules');

interface Shape {
  /** Property name -> declared type text. */
  readonly props: Map<string, string>;
  /** Imported type name -> declaration file. */
  readonly imports: Map<string, string>;
}
const shapes = new Map<string, Shape | null>();

/** The first interface declared in a kubernetes-models .d.ts file, or null for a type alias (Quantity). */
function shapeOf(file: string): Shape | null {
  const cached = shapes.get(file);
  if (cached !== undefined) return cached;
  const lines = readFileSync(file, 'utf8').split('\n');
  const imports = new Map<string, string>();
  for (const line of lines) {
    const m = /^import \{ (\w+) \} from "([^"]+)";$/.exec(line);
    if (m === null) continue;
    const from = m[2] as string;
    const target = from.startsWith('.') ? resolve(dirname(file), from) : join(NODE_MODULES, from);
    imports.set(m[1] as string, `${target}.d.ts`);
  }
  const start = lines.findIndex((l) => /^export interface \w+/.test(l));
  let shape: Shape | null = null;
  if (start !== -1) {
    const props = new Map<string, string>();
    if (/extends TypeMeta/.test(lines[start] as string)) {
      props.set('apiVersion', 'string');
      props.set('kind', 'string');
    }
    for (let i = start + 1; i < lines.length && !/^\}/.test(lines[i] as string); i++) {
      const m = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(lines[i] as string);
      if (m !== null) props.set(m[1] as string, m[2] as string);
    }
    shape = { props, imports };
  }
  shapes.set(file, shape);
  return shape;
}

/** Paths of every property the API does not define, below `value` of the type declared in `file`. */
function unknownFields(value: unknown, file: string, path: string): string[] {
  const shape = shapeOf(file);
  if (shape === null || typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const type = shape.props.get(key);
    if (type === undefined) {
      out.push(`${path}.${key}`);
      continue;
    }
    const array = /^Array<(\w+)>$/.exec(type);
    const ref = array ? array[1] : /^\w+$/.test(type) ? type : undefined;
    const childFile = ref === undefined ? undefined : shape.imports.get(ref);
    if (childFile === undefined) continue; // a leaf, a map or a literal union
    if (array && Array.isArray(child)) child.forEach((c, i) => out.push(...unknownFields(c, childFile, `${path}.${key}[${i}]`)));
    else out.push(...unknownFields(child, childFile, `${path}.${key}`));
  }
  return out;
}

function unknownFieldsOf(o: Obj): string[] {
  const file = join(MODELS_DIR, o.apiVersion, `${o.kind}.d.ts`);
  if (!existsSync(file)) throw new Error(`no declaration file for ${o.apiVersion} ${o.kind}`);
  return unknownFields(o, file, `${o.kind}/${o.metadata?.name}`);
}

// ---------------------------------------------------------------------------------------------
// Dockerfile facts the manifests must agree with.

function readDockerfile(): { entrypoint: string[]; cmd: string[]; env: Record<string, string>; user: string } {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const runtime = text.split(/^FROM /m).at(-1) as string;
  const json = (instr: string): string[] => {
    const m = new RegExp(`^${instr} (\\[.*\\])\\s*$`, 'm').exec(runtime);
    if (m === null) throw new Error(`Dockerfile: no exec-form ${instr} in the runtime stage`);
    return JSON.parse(m[1] as string) as string[];
  };
  const env: Record<string, string> = {};
  for (const m of runtime.matchAll(/^ENV (.*)$/gm)) {
    for (const kv of (m[1] as string).trim().split(/\s+/)) {
      const [k, v] = kv.split('=');
      if (k && v !== undefined) env[k] = v;
    }
  }
  const user = /^USER (\S+)/m.exec(runtime)?.[1] ?? '';
  return { entrypoint: json('ENTRYPOINT'), cmd: json('CMD'), env, user };
}
const DOCKERFILE = readDockerfile();

// ---------------------------------------------------------------------------------------------
// Small helpers.

/** A Kubernetes quantity in base units (cores, bytes). */
function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?$/.exec(q);
  if (m === null) throw new Error(`unsupported quantity ${q}`);
  const factor: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };
  return Number(m[1]) * (m[2] ? (factor[m[2]] as number) : 1);
}

function effective(pod: Obj, c: Obj, key: string): unknown {
  return c.securityContext?.[key] ?? pod.securityContext?.[key];
}

/** Every `...File` value in the raw config, with its dotted path. */
function fileSettings(node: unknown, path = ''): Array<{ path: string; file: string }> {
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([k, v]) => {
    const p = path ? `${path}.${k}` : k;
    if (k.endsWith('File') && typeof v === 'string') return [{ path: p, file: v }];
    return fileSettings(v, p);
  });
}

function probeArgs(probe: Obj | undefined): string[] {
  expect(probe?.exec?.command, 'an exec probe').toBeInstanceOf(Array);
  return probe!.exec.command as string[];
}

function optionValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
}

// ---------------------------------------------------------------------------------------------

const NATIVE = ['base', 'overlays/file', 'overlays/redis'] as const;
const VARIANTS = [...NATIVE, 'overlays/legacy-sidecar', 'file + legacy-sidecar component'] as const;
type Variant = (typeof VARIANTS)[number];

const rendered = new Map<Variant, Rendered>();
const configs = new Map<Variant, { text: string; config: Config; raw: Obj; path: string }>();
let healthHelp = '';

beforeAll(async () => {
  expect(ensureBuiltCli(), 'dist/cli.js (npm run build)').toBe(true);
  healthHelp = (await run(process.execPath, [CLI, 'health', '--help'])).stdout;

  for (const v of VARIANTS) {
    if (v === 'file + legacy-sidecar component') {
      // A user's own overlay combining the file variant with the legacy component. kustomize only
      // accepts relative paths to other kustomizations, hence the computed one.
      const dir = mkdtempSync(join(tmpdir(), 'tokend-k8s-'));
      try {
        const rel = relative(dir, K8S);
        writeFileSync(
          join(dir, 'kustomization.yaml'),
          `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${rel}/overlays/file]\ncomponents: [${rel}/components/legacy-sidecar]\n`,
        );
        rendered.set(v, { name: v, objects: render(dir) });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else {
      rendered.set(v, { name: v, objects: render(join(K8S, v)) });
    }
  }
  for (const [v, r] of rendered) {
    const { text, path } = tokendConfigText(r.objects);
    // metricsListen is proposed, not yet in the schema: the rest of the suite checks the rest of
    // the config, and 'holds a tokend config that tokend's parser accepts' checks the exact text.
    const withoutProposed = text.replace(/^metricsListen:.*$/m, '');
    configs.set(v, { text, config: parseConfig(withoutProposed, { env: {}, source: 'config.yaml' }), raw: parseYaml(text) as Obj, path });
  }
}, 60_000);

function objectsOf(v: Variant): Obj[] {
  return (rendered.get(v) as Rendered).objects;
}

describe('the unknown-field check itself', () => {
  it('flags a misspelt field deep inside a pod template and accepts the correct one', () => {
    const deployment = (securityContext: Obj): Obj => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x', annotations: { 'any.key/is': 'fine' } },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: { spec: { containers: [{ name: 'c', image: 'i', securityContext, resources: { limits: { cpu: '1' } } }] } },
      },
    });
    expect(unknownFieldsOf(deployment({ readOnlyRootFileSystem: true }))).toEqual([
      'Deployment/x.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem',
    ]);
    expect(unknownFieldsOf(deployment({ readOnlyRootFilesystem: true }))).toEqual([]);
  });
});

describe.each(VARIANTS)('k8s %s', (variant) => {
  it('renders with kubectl kustomize, and every object validates against the Kubernetes API schema with no unknown field', () => {
    const objects = objectsOf(variant);
    expect(objects.length).toBeGreaterThanOrEqual(3);
    for (const o of objects) {
      expect(() => modelFor(o).validate(), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
  });

  it("holds a tokend config that tokend's parser accepts, mounted where the image looks for it", () => {
    const { text, path } = configs.get(variant)!;
    expect(path).toBe(DOCKERFILE.env.TOKEND_CONFIG);
    // No ${VAR} left unresolved: the manifests set no environment for the config.
    const config = parseConfig(text, { env: {}, source: 'config.yaml' });
    expect(config.tokens.length).toBeGreaterThan(0);
    // The token endpoint never leaves the pod.
    expect(config.listen).toMatchObject({ kind: 'tcp', host: '127.0.0.1' });
    expect(config.allowRemote).toBe(false);
  });

  it('runs the image as built: entrypoint unchanged, command `run`', () => {
    const tokend = tokendContainer(podSpec(appDeployment(objectsOf(variant))));
    expect(tokend.command).toBeUndefined();
    expect(tokend.args).toEqual(DOCKERFILE.cmd);
    expect(tokend.image).toMatch(/^[\w.-]+(\/[\w.-]+)+:[\w.-]+$/);
    expect(tokend.image).not.toMatch(/:latest$/);
  });

  it("probes with the CLI in the image, against the daemon's listen address: liveness /healthz, readiness and start-up /readyz", () => {
    const tokend = tokendContainer(podSpec(appDeployment(objectsOf(variant))));
    const { config } = configs.get(variant)!;
    const listen = config.listen as { host: string; port: number };
    const probes = { startup: tokend.startupProbe, readiness: tokend.readinessProbe, liveness: tokend.livenessProbe };
    for (const [kind, probe] of Object.entries(probes)) {
      const args = probeArgs(probe);
      // node and the CLI at the paths the Dockerfile's ENTRYPOINT uses.
      expect(args.slice(0, 2), kind).toEqual(DOCKERFILE.entrypoint);
      expect(args[2], kind).toBe('health');
      expect(optionValue(args, '--url'), kind).toBe(`http://${listen.host}:${listen.port}`);
      expect(args.includes('--ready'), kind).toBe(kind !== 'liveness');
      for (const opt of args.slice(3).filter((a) => a.startsWith('--'))) {
        expect(healthHelp, `tokend health has ${opt}`).toContain(opt);
      }
      // Each probe starts a node process: no tighter than every 2 s, and time to start it.
      expect(probe.periodSeconds, kind).toBeGreaterThanOrEqual(kind === 'startup' ? 2 : 10);
      expect(probe.timeoutSeconds, kind).toBeGreaterThanOrEqual(3);
    }
    // Long enough for an IdP that answers slowly at start-up, before kubelet restarts tokend.
    expect(probes.startup.periodSeconds * probes.startup.failureThreshold).toBeGreaterThanOrEqual(120);
  });

  it('asks the endpoint with the Tokend-Request header, or reads the file store, for a configured token', () => {
    const app = appContainer(podSpec(appDeployment(objectsOf(variant))));
    const { config } = configs.get(variant)!;
    const listen = config.listen as { host: string; port: number };
    const script = [...(app.command ?? []), ...(app.args ?? [])].join(' ');
    const names = config.tokens.map((t) => t.name);
    const url = new RegExp(`http://${listen.host}:${listen.port}/v1/token/([a-z0-9_.-]+)`).exec(script);
    if (config.store.type === 'file' && url === null) {
      const file = new RegExp(`${config.store.dir}/([a-z0-9_.-]+)`).exec(script);
      expect(names).toContain(file?.[1]);
    } else {
      expect(names).toContain(url?.[1]);
      expect(script).toContain("--header 'Tokend-Request: 1'");
    }
  });

  it('locks every container down: non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    for (const w of workloads(objectsOf(variant))) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext?.seccompProfile?.type, w.metadata.name).toBe('RuntimeDefault');
      expect(pod.securityContext?.runAsNonRoot, w.metadata.name).toBe(true);
      expect(pod.automountServiceAccountToken, w.metadata.name).toBe(false);
      expect(pod.hostNetwork ?? false).toBe(false);
      for (const c of allContainers(pod)) {
        const where = `${w.metadata.name}/${c.name}`;
        expect(c.securityContext?.readOnlyRootFilesystem, where).toBe(true);
        expect(c.securityContext?.allowPrivilegeEscalation, where).toBe(false);
        expect(c.securityContext?.privileged ?? false, where).toBe(false);
        expect(c.securityContext?.capabilities?.drop, where).toContain('ALL');
        expect(c.securityContext?.capabilities?.add ?? [], where).toEqual([]);
        expect(effective(pod, c, 'runAsNonRoot'), where).toBe(true);
        expect(effective(pod, c, 'runAsUser'), where).toBeGreaterThan(0);
        const seccomp = (c.securityContext?.seccompProfile ?? pod.securityContext.seccompProfile) as Obj;
        expect(seccomp.type, where).toBe('RuntimeDefault');
      }
    }
    const pod = podSpec(appDeployment(objectsOf(variant)));
    // The image's numeric user, and a group that owns the shared volumes.
    expect(pod.securityContext).toMatchObject({ runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 });
    expect(effective(pod, tokendContainer(pod), 'runAsUser')).toBe(Number(DOCKERFILE.user.split(':')[0]));
    // The application is another user: it reaches tokens through the endpoint or group bits only.
    expect(effective(pod, appContainer(pod), 'runAsUser')).not.toBe(effective(pod, tokendContainer(pod), 'runAsUser'));
  });

  it("sets requests and limits on every container, and tokend's cover its measured footprint plus a probe", () => {
    for (const w of workloads(objectsOf(variant))) {
      for (const c of allContainers(w.spec.template.spec)) {
        const where = `${w.metadata.name}/${c.name}`;
        for (const r of ['cpu', 'memory']) {
          const req = c.resources?.requests?.[r];
          const lim = c.resources?.limits?.[r];
          expect(req, `${where} requests.${r}`).toBeDefined();
          expect(lim, `${where} limits.${r}`).toBeDefined();
          expect(quantity(req), `${where} ${r} request <= limit`).toBeLessThanOrEqual(quantity(lim));
        }
      }
    }
    const tokend = tokendContainer(podSpec(appDeployment(objectsOf(variant))));
    const MiB = 2 ** 20;
    expect(quantity(tokend.resources.requests.memory)).toBeGreaterThanOrEqual(MEASURED.daemonSteadyRssMiB * MiB);
    expect(quantity(tokend.resources.limits.memory)).toBeGreaterThanOrEqual((MEASURED.daemonPeakRssMiB + MEASURED.probeRssMiB) * MiB);
  });

  it('mounts every secret file the config names from the Secret, into tokend only, read-only', () => {
    const objects = objectsOf(variant);
    const pod = podSpec(appDeployment(objects));
    const tokend = tokendContainer(pod);
    const files = fileSettings(configs.get(variant)!.raw);
    expect(files.length).toBeGreaterThan(0);
    for (const { path, file } of files) {
      const mount = (tokend.volumeMounts as Obj[]).find((m) => file.startsWith(`${m.mountPath}/`));
      expect(mount, `${path}: ${file} is under a tokend volume mount`).toBeDefined();
      expect(mount!.readOnly, path).toBe(true);
      const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name) as Obj;
      expect(volume.secret, `${path}: volume ${volume.name} is a Secret`).toBeDefined();
      const secret = one(objects, 'Secret', volume.secret.secretName);
      const key = posix.relative(mount!.mountPath, file);
      expect({ ...secret.data, ...secret.stringData }, `${path}: Secret ${secret.metadata.name} has key ${key}`).toHaveProperty([key]);
      // Readable through the fsGroup, by nobody else.
      expect(volume.secret.defaultMode & 0o007, path).toBe(0);
      for (const c of allContainers(pod).filter((x) => x.name !== 'tokend')) {
        expect((c.volumeMounts ?? []).map((m: Obj) => m.name), `${c.name} does not mount ${volume.name}`).not.toContain(volume.name);
      }
    }
  });

  it('exposes metrics for scraping on a metrics-only listener, never the token endpoint', () => {
    const pod = appDeployment(objectsOf(variant)).spec.template;
    const { raw, config } = configs.get(variant)!;
    const tokend = tokendContainer(pod.spec);
    const metricsPort = (tokend.ports as Obj[]).find((p) => p.name === 'metrics');
    expect(pod.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(metricsPort?.containerPort),
      'prometheus.io/path': '/metrics',
    });
    // metricsListen (a metrics-only listener) is what makes scraping from outside the pod possible.
    expect(raw.metricsListen).toBe(`0.0.0.0:${metricsPort?.containerPort}`);
    expect((config.listen as { port: number }).port).not.toBe(metricsPort?.containerPort);
  });
});

describe.each(NATIVE)('k8s %s: native sidecar (Kubernetes 1.29+)', (variant) => {
  it('runs tokend as a restartable init container whose start-up probe waits for valid tokens', () => {
    const pod = podSpec(appDeployment(objectsOf(variant)));
    expect(pod.initContainers.map((c: Obj) => c.name)).toEqual(['tokend']);
    const tokend = pod.initContainers[0] as Obj;
    expect(tokend.restartPolicy).toBe('Always');
    expect(probeArgs(tokend.startupProbe)).toContain('--ready');
    expect(pod.containers.map((c: Obj) => c.name)).not.toContain('tokend');
  });
});

describe.each(['overlays/legacy-sidecar', 'file + legacy-sidecar component'] as const)('k8s %s: ordinary sidecar (before 1.29)', (variant) => {
  it('runs tokend first among the containers, and its postStart hook holds the application back until tokens are valid', () => {
    const pod = podSpec(appDeployment(objectsOf(variant)));
    expect(pod.initContainers ?? []).toEqual([]);
    const tokend = pod.containers[0] as Obj;
    expect(tokend.name).toBe('tokend');
    expect(tokend.restartPolicy).toBeUndefined();
    const hook = tokend.lifecycle?.postStart?.exec?.command as string[];
    expect(hook.slice(0, 3)).toEqual([...DOCKERFILE.entrypoint, 'health']);
    expect(hook).toContain('--ready');
    expect(Number(optionValue(hook, '--wait'))).toBeGreaterThan(0);
    for (const opt of hook.slice(3).filter((a) => a.startsWith('--'))) {
      expect(healthHelp, `tokend health has ${opt} (needed by the postStart hook)`).toContain(opt);
    }
    // All containers get SIGTERM together: tokend lingers so the application's last calls succeed.
    expect(tokend.lifecycle?.preStop?.exec?.command?.[0]).toBe(DOCKERFILE.entrypoint[0]);
  });
});

describe.each(['overlays/file', 'file + legacy-sidecar component'] as const)('k8s %s: file store', (variant) => {
  it('shares the token directory as an in-memory emptyDir, read-only in the application, readable through the fsGroup only', () => {
    const pod = podSpec(appDeployment(objectsOf(variant)));
    const { config } = configs.get(variant)!;
    expect(config.store.type).toBe('file');
    const store = config.store as Extract<Config['store'], { type: 'file' }>;
    const tokendMount = (tokendContainer(pod).volumeMounts as Obj[]).find((m) => m.mountPath === store.dir);
    const appMount = (appContainer(pod).volumeMounts as Obj[]).find((m) => m.mountPath === store.dir);
    expect(tokendMount?.readOnly ?? false).toBe(false);
    expect(appMount?.readOnly).toBe(true);
    expect(appMount?.name).toBe(tokendMount?.name);
    const volume = (pod.volumes as Obj[]).find((v) => v.name === tokendMount?.name) as Obj;
    expect(volume.emptyDir?.medium).toBe('Memory');
    expect(volume.emptyDir?.sizeLimit).toBeDefined();
    // Owner read/write, group read (the application, through fsGroup), nothing for others.
    expect(store.mode).toBe(0o640);
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    // Refresh-token state lives where the application cannot even see it.
    for (const m of appContainer(pod).volumeMounts as Obj[]) {
      expect(`${store.stateDir}/`.startsWith(`${m.mountPath}/`), `app mount ${m.mountPath} holds ${store.stateDir}`).toBe(false);
    }
    const stateMount = (tokendContainer(pod).volumeMounts as Obj[]).find((m) => `${store.stateDir}/`.startsWith(`${m.mountPath}/`));
    expect(stateMount?.readOnly ?? false).toBe(false);
    expect((pod.volumes as Obj[]).find((v) => v.name === stateMount?.name)?.emptyDir?.medium).toBe('Memory');
  });
});

describe('k8s overlays/redis: Redis store', () => {
  it('points the store at the Redis Service of the try-out manifest, which only the application pods may reach', () => {
    const objects = objectsOf('overlays/redis');
    const { config } = configs.get('overlays/redis')!;
    expect(config.store.type).toBe('redis');
    const url = new URL((config.store as { url: string }).url);
    const service = one(objects, 'Service', url.hostname);
    expect(service.spec.ports.map((p: Obj) => p.port)).toContain(Number(url.port || 6379));
    const redis = one(objects, 'Deployment', 'redis');
    expect(redis.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    const container = redis.spec.template.spec.containers[0] as Obj;
    const targetPort = service.spec.ports[0].targetPort;
    expect(container.ports.map((p: Obj) => p.name)).toContain(targetPort);

    // The password tokend reads is the one Redis requires.
    const passwordFile = (configs.get('overlays/redis')!.raw.store as Obj).passwordFile as string;
    const env = (container.env as Obj[]).find((e) => e.name === 'REDIS_PASSWORD');
    expect(container.args.join(' ')).toContain('--requirepass $(REDIS_PASSWORD)');
    expect(passwordFile.endsWith(`/${env?.valueFrom?.secretKeyRef?.key}`)).toBe(true);

    const policy = one(objects, 'NetworkPolicy', 'redis');
    expect(policy.spec.podSelector.matchLabels).toEqual(service.spec.selector);
    expect(appDeployment(objects).spec.template.metadata.labels).toMatchObject(policy.spec.ingress[0].from[0].podSelector.matchLabels);
  });

  it('runs more than one replica: they share one grant through Redis', () => {
    expect(appDeployment(objectsOf('overlays/redis')).spec.replicas).toBeGreaterThan(1);
  });
});

describe('k8s probe commands against an endpoint', () => {
  it('liveness asks /healthz and readiness /readyz, and a 503 fails the probe', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(req.url === '/healthz' ? 200 : 503, { 'content-type': 'application/json' });
      res.end(req.url === '/healthz' ? '{"status":"ok"}' : '{"error":"not_ready","tokens":["orders"]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const tokend = tokendContainer(podSpec(appDeployment(objectsOf('base'))));
      const exec = async (probe: Obj): Promise<number> => {
        const args = probeArgs(probe).slice(2).map((a, i, all) => (all[i - 1] === '--url' ? url : a));
        try {
          await run(process.execPath, [CLI, ...args]);
          return 0;
        } catch (err) {
          return (err as { code: number }).code;
        }
      };
      expect(await exec(tokend.livenessProbe)).toBe(0);
      expect(seen).toEqual(['/healthz']);
      expect(await exec(tokend.readinessProbe)).not.toBe(0);
      expect(seen).toEqual(['/healthz', '/readyz']);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
