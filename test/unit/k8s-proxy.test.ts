/**
 * k8s/overlays/egress-proxy, checked offline: it renders with `kubectl kustomize`, every object
 * validates against the Kubernetes API schemas (kubernetes-models) with no unknown field, the
 * tokend config passes tokend's own parser, and the application reaches its upstream through the
 * proxy only (its base URL is the proxy's loopback address; it never sees a token or a credential).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OVERLAY = join(ROOT, 'k8s/overlays/egress-proxy');
const MODELS_DIR = join(ROOT, 'node_modules/kubernetes-models');
const MiB = 2 ** 20;

/**
 * Measured (test/integration/proxy-stream.test.ts, Node 20): tokend resting at ~105 MiB resident,
 * peaking at ~146 MiB while 100 MiB streamed each way through the proxy; a probe process adds up
 * to ~100 MiB for a moment (test/unit/k8s.test.ts).
 */
const MEASURED = { proxyPeakRssMiB: 150, probeRssMiB: 100 };

type Obj = Record<string, any>;
const MODELS: Record<string, Record<string, any>> = { v1: core, 'apps/v1': apps };

/** Property name -> declared type, and imported type -> file, of the first interface in a kubernetes-models .d.ts. */
function shapeOf(file: string): { props: Map<string, string>; imports: Map<string, string> } | null {
  const lines = readFileSync(file, 'utf8').split('\n');
  const imports = new Map<string, string>();
  for (const line of lines) {
    const m = /^import \{ (\w+) \} from "([^"]+)";$/.exec(line);
    if (m) imports.set(m[1] as string, `${m[2]!.startsWith('.') ? resolve(dirname(file), m[2]!) : join(ROOT, 'node_modules', m[2]!)}.d.ts`);
  }
  const start = lines.findIndex((l) => /^export interface \w+/.test(l));
  if (start === -1) return null;
  const props = new Map<string, string>();
  if (/extends TypeMeta/.test(lines[start] as string)) ['apiVersion', 'kind'].forEach((k) => props.set(k, 'string'));
  for (let i = start + 1; i < lines.length && !/^\}/.test(lines[i] as string); i++) {
    const m = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(lines[i] as string);
    if (m) props.set(m[1] as string, m[2] as string);
  }
  return { props, imports };
}

/** Paths of every property the Kubernetes API does not define (kubernetes-models accepts extras; the API server does not). */
function unknownFields(value: unknown, file: string, path: string): string[] {
  const shape = shapeOf(file);
  if (shape === null || typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const type = shape.props.get(key);
    if (type === undefined) return [`${path}.${key}`];
    const array = /^Array<(\w+)>$/.exec(type);
    const ref = array ? array[1] : /^\w+$/.test(type) ? type : undefined;
    const childFile = ref === undefined ? undefined : shape.imports.get(ref);
    if (childFile === undefined) return [];
    if (array && Array.isArray(child)) return child.flatMap((c, i) => unknownFields(c, childFile, `${path}.${key}[${i}]`));
    return unknownFields(child, childFile, `${path}.${key}`);
  });
}

let objects: Obj[] = [];
let pod: Obj;
let config: Config;

const container = (name: string): Obj => [...(pod.initContainers ?? []), ...pod.containers].find((c: Obj) => c.name === name);
const UNIT: Record<string, number> = { '': 1, m: 1e-3, Mi: MiB, Gi: 1024 * MiB };
/** A Kubernetes quantity in base units (cores, bytes). */
function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)(m|Mi|Gi)?$/.exec(q);
  if (m === null) throw new Error(`unsupported quantity ${q}`);
  return Number(m[1]) * (UNIT[m[2] ?? ''] as number);
}

beforeAll(() => {
  const text = execFileSync('kubectl', ['kustomize', OVERLAY], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  objects = parseAllDocuments(text).map((d) => d.toJS() as Obj);
  pod = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'orders-app')!.spec.template.spec;
  const tokend = container('tokend');
  const path = (tokend.env as Obj[]).find((e) => e.name === 'TOKEND_CONFIG')!.value as string;
  const mount = (tokend.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`))!;
  const cmName = (pod.volumes as Obj[]).find((v) => v.name === mount.name)!.configMap.name;
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === cmName)!;
  config = parseConfig(cm.data[posix.relative(mount.mountPath, path)], { env: {}, source: 'config.yaml' });
}, 30_000);

describe('k8s overlays/egress-proxy', () => {
  it('renders, and every object validates against the Kubernetes API schema with no unknown field', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Secret']);
    for (const o of objects) {
      const Model = MODELS[o.apiVersion]?.[o.kind];
      expect(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      const file = join(MODELS_DIR, o.apiVersion, `${o.kind}.d.ts`);
      expect(existsSync(file)).toBe(true);
      expect(unknownFields(o, file, `${o.kind}/${o.metadata.name}`)).toEqual([]);
    }
  });

  it('configures a proxy on loopback for a configured token, to an https upstream', () => {
    expect(config.proxies).toHaveLength(1);
    const proxy = config.proxies![0]!;
    expect(proxy.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9101 });
    expect(proxy.allowRemote).toBe(false);
    expect(config.tokens.map((t) => t.name)).toContain(proxy.token);
    expect(new URL(proxy.upstream).protocol).toBe('https:');
    expect(config.listen).toMatchObject({ kind: 'tcp', host: '127.0.0.1' });
  });

  it("points the application's upstream base URL at the proxy, and the application never asks for a token", () => {
    const app = container('app');
    const proxy = config.proxies![0]!.listen as { host: string; port: number };
    const env = Object.fromEntries((app.env as Obj[]).map((e) => [e.name, e.value]));
    expect(env.ORDERS_API_URL).toBe(`http://${proxy.host}:${proxy.port}`);
    const script = (app.command as string[]).join(' ');
    expect(script).toContain('$ORDERS_API_URL/');
    expect(script).not.toContain('/v1/token/');
    expect(script).not.toMatch(/Tokend-Request|Authorization/i);
    // Nothing of tokend's is mounted into the application: no credentials, no token files.
    const tokendVolumes = (container('tokend').volumeMounts as Obj[]).map((m) => m.name);
    for (const m of (app.volumeMounts ?? []) as Obj[]) expect(tokendVolumes).not.toContain(m.name);
  });

  it('keeps the proxy inside the pod: no container port or Service exposes it', () => {
    const port = (config.proxies![0]!.listen as { port: number }).port;
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      expect((c.ports ?? []).map((p: Obj) => p.containerPort)).not.toContain(port);
    }
    expect(objects.filter((o) => o.kind === 'Service')).toEqual([]);
  });

  it('holds the application back until the token is valid (native sidecar with a start-up probe)', () => {
    const tokend = container('tokend');
    expect(pod.initContainers.map((c: Obj) => c.name)).toEqual(['tokend']);
    expect(tokend.restartPolicy).toBe('Always');
    // httpGet on the metrics listener's /readyz (the exec form is the exec-probes component's).
    expect(tokend.startupProbe.httpGet).toMatchObject({ path: '/readyz', port: 'tokend-metrics' });
  });

  it("gives tokend room for the measured proxy peak plus a probe, and requests no more than it limits", () => {
    const r = container('tokend').resources;
    expect(quantity(r.limits.memory)).toBeGreaterThanOrEqual((MEASURED.proxyPeakRssMiB + MEASURED.probeRssMiB) * MiB);
    expect(quantity(r.requests.memory)).toBeGreaterThanOrEqual(MEASURED.proxyPeakRssMiB * MiB);
    expect(quantity(r.requests.memory)).toBeLessThanOrEqual(quantity(r.limits.memory));
    expect(quantity(r.requests.cpu)).toBeLessThanOrEqual(quantity(r.limits.cpu));
  });
});
