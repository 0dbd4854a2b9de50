/**
 * The Kubernetes manifests in k8s/, checked offline: every variant renders with `kubectl kustomize`,
 * every object validates against the Kubernetes API schemas with no unknown fields, the tokend
 * config in each ConfigMap passes tokend's own parser, the probes ask the listener the daemon
 * really opens (httpGet) or run commands the built CLI has (exec variant), and the security
 * settings hold. The Redis overlay's ACL wiring: k8s-redis.test.ts, and run against a real
 * redis-server in test/integration/redis-acl.test.ts.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli, CLI } from '../support/daemon.js';
import { allContainers, K8S, put, quantity, render, renderOwn, unknownFieldsOf, validateSchema, workloads, type Obj } from '../support/k8s.js';
import { appContainer, appDeployment, dockerfileFacts, listenPort, metricsPort, one, podSpec, tokendContainer, tokendConfigText } from '../support/k8s-tokend.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const run = promisify(execFile);
const DOCKERFILE = dockerfileFacts();

/**
 * The daemon's footprint, measured on this machine with Node 24 (docs/kubernetes.md,
 * "Resources"): RSS of `node dist/cli.js run` with two 10-second tokens (client credentials and a
 * rotating refresh token) against the dev IdP over 5 minutes, steady after GC and peak; and the
 * peak RSS of one exec-probe process (`node dist/cli.js health --ready`), which the exec-probes
 * variant runs inside the same container, so it counts against its memory limit. MiB. (Each RSS
 * includes ~60 MiB of shared node binary pages, so adding two of them overestimates: on purpose.)
 */
// docs/performance.md, the image on Node 24: 59-62 MiB idle, highest 86 MiB (10-minute soak, Redis
// store, 200 requests/s); an exec probe process peaks at 51 MiB.
const MEASURED = { daemonSteadyRssMiB: 62, daemonPeakRssMiB: 86, probeRssMiB: 51 };

// ---------------------------------------------------------------------------------------------


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

const NATIVE = ['base', 'overlays/file', 'overlays/redis', 'base + exec-probes component'] as const;
const LEGACY = ['overlays/legacy-sidecar', 'file + legacy-sidecar component'] as const;
const VARIANTS = [...NATIVE, ...LEGACY] as const;
type Variant = (typeof VARIANTS)[number];
const EXEC_PROBES: readonly Variant[] = ['base + exec-probes component'];

const rendered = new Map<Variant, Obj[]>();
const configs = new Map<Variant, { text: string; config: Config; raw: Obj; path: string }>();
let healthHelp = '';

/** A user's own overlay: `resources` plus `components`, rendered from a temp dir. */
function overlay(resource: string, component: string): Obj[] {
  return renderOwn((dir, k8s) =>
    put(dir, 'kustomization.yaml', `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${k8s}/${resource}]\ncomponents: [${k8s}/components/${component}]\n`),
  );
}

beforeAll(async () => {
  expect(ensureBuiltCli(), 'dist/cli.js (npm run build)').toBe(true);
  healthHelp = (await run(process.execPath, [CLI, 'health', '--help'])).stdout;
  for (const v of VARIANTS) {
    if (v === 'file + legacy-sidecar component') rendered.set(v, overlay('overlays/file', 'legacy-sidecar'));
    else if (v === 'base + exec-probes component') rendered.set(v, overlay('base', 'exec-probes'));
    else rendered.set(v, render(join(K8S, v)));
  }
  for (const [v, objects] of rendered) {
    const { text, path } = tokendConfigText(objects, appDeployment(objects), DOCKERFILE.env.TOKEND_CONFIG as string);
    configs.set(v, { text, config: parseConfig(text, { env: {}, source: 'config.yaml' }), raw: parseYaml(text) as Obj, path });
  }
}, 60_000);

function objectsOf(v: Variant): Obj[] {
  return rendered.get(v) as Obj[];
}

function expectHttpProbes(probes: Record<string, Obj>, tokend: Obj, config: Config): void {
  const port = metricsPort(tokend);
  expect(port.containerPort).toBe(listenPort(config.metricsListen));
  for (const [kind, probe] of Object.entries(probes)) {
    expect(probe.exec, kind).toBeUndefined();
    expect(probe.httpGet, kind).toEqual({ path: kind === 'liveness' ? '/healthz' : '/readyz', port: port.name });
    expect(probe.timeoutSeconds, kind).toBeGreaterThanOrEqual(1);
  }
  // An IdP outage fails readiness, never liveness (which would restart tokend for nothing).
  expect(probes.liveness!.httpGet.path).not.toBe(probes.readiness!.httpGet.path);
}

function expectExecProbes(probes: Record<string, Obj>, config: Config): void {
  const listen = config.listen as { host: string; port: number };
  for (const [kind, probe] of Object.entries(probes)) {
    expect(probe.httpGet, kind).toBeUndefined();
    const args = probeArgs(probe);
    // The Dockerfile's ENTRYPOINT: node, its flags and the CLI.
    const n = DOCKERFILE.entrypoint.length;
    expect(args.slice(0, n), kind).toEqual(DOCKERFILE.entrypoint);
    expect(args[n], kind).toBe('health');
    expect(optionValue(args, '--url'), kind).toBe(`http://${listen.host}:${listen.port}`);
    expect(args.includes('--ready'), kind).toBe(kind !== 'liveness');
    for (const opt of args.slice(n + 1).filter((a) => a.startsWith('--'))) {
      expect(healthHelp, `tokend health has ${opt}`).toContain(opt);
    }
    // Each probe starts a node process: no tighter than every 2 s, and time to start it.
    expect(probe.periodSeconds, kind).toBeGreaterThanOrEqual(kind === 'startup' ? 2 : 10);
    expect(probe.timeoutSeconds, kind).toBeGreaterThanOrEqual(3);
  }
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

  it('also reads the inline types of custom resources (PodMonitor)', () => {
    const podMonitor = (endpoint: Obj): Obj => ({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PodMonitor',
      metadata: { name: 'm', labels: { any: 'label' } },
      spec: { selector: { matchLabels: { a: 'b' } }, podMetricsEndpoints: [endpoint] },
    });
    expect(unknownFieldsOf(podMonitor({ port: 'p', intervall: '30s' }))).toEqual(['PodMonitor/m.spec.podMetricsEndpoints[0].intervall']);
    expect(unknownFieldsOf(podMonitor({ port: 'p', interval: '30s' }))).toEqual([]);
  });
});

describe.each(VARIANTS)('k8s %s', (variant) => {
  it('renders with kubectl kustomize, and every object validates against the Kubernetes API schema with no unknown field', () => {
    const objects = objectsOf(variant);
    expect(objects.length).toBeGreaterThanOrEqual(3);
    for (const o of objects) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
  });

  it("holds a tokend config that tokend's parser accepts, mounted where the image looks for it", () => {
    const { config, path } = configs.get(variant)!;
    expect(path).toBe(DOCKERFILE.env.TOKEND_CONFIG);
    expect(config.tokens.length).toBeGreaterThan(0);
    // The token endpoint never leaves the pod; the metrics/health listener binds the pod IP.
    expect(config.listen).toMatchObject({ kind: 'tcp', host: '127.0.0.1' });
    expect(config.allowRemote).toBe(false);
    expect(config.metricsListen).toMatchObject({ kind: 'tcp', host: '0.0.0.0' });
  });

  it('runs the image as built: entrypoint unchanged, command `run`', () => {
    const tokend = tokendContainer(podSpec(appDeployment(objectsOf(variant))));
    expect(tokend.command).toBeUndefined();
    expect(tokend.args).toEqual(DOCKERFILE.cmd);
    expect(tokend.image).toMatch(/^[\w.-]+(\/[\w.-]+)+:[\w.-]+$/);
    expect(tokend.image).not.toMatch(/:latest$/);
  });

  it('probes over HTTP on the metrics listener the daemon opens (start-up and readiness /readyz, liveness /healthz), or with the CLI in the image (exec-probes)', () => {
    const tokend = tokendContainer(podSpec(appDeployment(objectsOf(variant))));
    const { config } = configs.get(variant)!;
    const probes = { startup: tokend.startupProbe, readiness: tokend.readinessProbe, liveness: tokend.livenessProbe };
    if (EXEC_PROBES.includes(variant)) expectExecProbes(probes, config);
    else expectHttpProbes(probes, tokend, config);
    // Long enough for an IdP that answers slowly at start-up, before kubelet restarts tokend.
    expect(probes.startup.periodSeconds * probes.startup.failureThreshold).toBeGreaterThanOrEqual(120);
  });

  it('asks the endpoint with the Tokend-Request header, reads the file store, or reads Redis with its own user, for a configured token', () => {
    const app = appContainer(podSpec(appDeployment(objectsOf(variant))));
    const { config } = configs.get(variant)!;
    const listen = config.listen as { host: string; port: number };
    const script = [...(app.command ?? []), ...(app.args ?? [])].join(' ');
    const names = config.tokens.map((t) => t.name);
    if (config.store.type === 'redis') {
      const env = Object.fromEntries((app.env as Obj[]).map((e) => [e.name, e.value]));
      expect(script).toContain('redis-cli');
      expect(script).toContain('"$TOKEN_KEY"');
      const prefix = (config.store as Extract<Config['store'], { type: 'redis' }>).prefix;
      expect(names.map((n) => `${prefix}${n}`)).toContain(env.TOKEN_KEY);
      expect(script).not.toContain('/v1/token/');
      return;
    }
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
      expect(pod.enableServiceLinks, w.metadata.name).toBe(false);
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

  it("sets requests and limits on every container, and tokend's cover its measured footprint plus an exec probe", () => {
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

  it('exposes metrics for scraping on the metrics-only listener, never the token endpoint', () => {
    const pod = appDeployment(objectsOf(variant)).spec.template;
    const { config } = configs.get(variant)!;
    const port = metricsPort(tokendContainer(pod.spec));
    expect(pod.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(port.containerPort),
      'prometheus.io/path': '/metrics',
    });
    // The label k8s/monitoring/podmonitor.yaml selects.
    expect(pod.metadata.labels).toMatchObject({ 'tokend/sidecar': 'enabled' });
    expect(listenPort(config.listen)).not.toBe(port.containerPort);
  });
});

describe.each(NATIVE)('k8s %s: native sidecar (Kubernetes 1.29+)', (variant) => {
  it('runs tokend as the first, restartable init container, whose start-up probe waits for valid tokens', () => {
    const pod = podSpec(appDeployment(objectsOf(variant)));
    expect(pod.initContainers[0].name).toBe('tokend');
    const tokend = pod.initContainers[0] as Obj;
    expect(tokend.restartPolicy).toBe('Always');
    const startup = tokend.startupProbe as Obj;
    if (startup.httpGet) expect(startup.httpGet.path).toBe('/readyz');
    else expect(probeArgs(startup)).toContain('--ready');
    expect(pod.containers.map((c: Obj) => c.name)).not.toContain('tokend');
  });
});

describe.each(LEGACY)('k8s %s: ordinary sidecar (before 1.29)', (variant) => {
  it('runs tokend first among the containers, and its postStart hook holds the application back until tokens are valid', () => {
    const pod = podSpec(appDeployment(objectsOf(variant)));
    expect(pod.initContainers ?? []).toEqual([]);
    const tokend = pod.containers[0] as Obj;
    expect(tokend.name).toBe('tokend');
    expect(tokend.restartPolicy).toBeUndefined();
    const hook = tokend.lifecycle?.postStart?.exec?.command as string[];
    expect(hook.slice(0, DOCKERFILE.entrypoint.length + 1)).toEqual([...DOCKERFILE.entrypoint, 'health']);
    expect(hook).toContain('--ready');
    expect(Number(optionValue(hook, '--wait'))).toBeGreaterThan(0);
    for (const opt of hook.slice(DOCKERFILE.entrypoint.length + 1).filter((a) => a.startsWith('--'))) {
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
    // The token directory is one tokend creates inside the shared volume: the volume's root is
    // kubelet's and world-writable, which the file store refuses.
    const holds = (m: Obj): boolean => store.dir.startsWith(`${m.mountPath}/`);
    const tokendMount = (tokendContainer(pod).volumeMounts as Obj[]).find(holds);
    const appMount = (appContainer(pod).volumeMounts as Obj[]).find(holds);
    expect(tokendMount).toBeDefined();
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

describe('k8s exec probes (components/exec-probes) against an endpoint', () => {
  it('liveness asks /healthz and readiness /readyz, and a 503 fails the probe', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(req.url === '/healthz' ? 200 : 503, { 'content-type': 'application/json' });
      res.end(req.url === '/healthz' ? '{"status":"ok"}' : '{"ready":false,"not_ready":[{"token":"orders","reason":"expired"}]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const tokend = tokendContainer(podSpec(appDeployment(objectsOf('base + exec-probes component'))));
      // The probe's arguments after the ENTRYPOINT (node, its flags, the CLI), run by this node.
      const exec = async (probe: Obj): Promise<number> => {
        const args = probeArgs(probe).slice(DOCKERFILE.entrypoint.length).map((a, i, all) => (all[i - 1] === '--url' ? url : a));
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
