/**
 * k8s/overlays/egress-proxy, checked offline: it renders with `kubectl kustomize`, every object
 * validates against the Kubernetes API schemas (kubernetes-models) with no unknown field, the
 * tokend config passes tokend's own parser, and the application reaches its upstream through the
 * proxy only (its base URL is the proxy's loopback address; it never sees a token or a credential).
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allContainers, K8S, quantity, render, unknownFieldsOf, validateSchema, type Obj } from '../support/k8s.js';
import { appDeployment, dockerfileFacts, podSpec, tokendConfigText } from '../support/k8s-tokend.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const OVERLAY = join(K8S, 'overlays/egress-proxy');
const MiB = 2 ** 20;

/**
 * Measured (test/integration/proxy-stream.test.ts, Node 20): tokend resting at ~105 MiB resident,
 * peaking at ~146 MiB while 100 MiB streamed each way through the proxy; a probe process adds up
 * to ~100 MiB for a moment (test/unit/k8s.test.ts).
 */
const MEASURED = { proxyPeakRssMiB: 150, probeRssMiB: 100 };

let objects: Obj[] = [];
let pod: Obj;
let config: Config;

const container = (name: string): Obj => allContainers(pod).find((c: Obj) => c.name === name) as Obj;
beforeAll(() => {
  objects = render(OVERLAY);
  const app = appDeployment(objects);
  pod = podSpec(app);
  config = parseConfig(tokendConfigText(objects, app, dockerfileFacts().env.TOKEND_CONFIG as string).text, { env: {}, source: 'config.yaml' });
}, 30_000);

describe('k8s overlays/egress-proxy', () => {
  it('renders, and every object validates against the Kubernetes API schema with no unknown field', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Secret']);
    for (const o of objects) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(unknownFieldsOf(o)).toEqual([]);
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
