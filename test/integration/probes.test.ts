/**
 * The manifests' httpGet probes asked of a real tokend: the base's config (issuer, files and
 * addresses swapped for local ones) run by the built CLI, and each probe's path requested on the
 * port it names, as kubelet would over the pod IP. Liveness must pass while the IdP is down;
 * start-up and readiness must fail then, and pass once the token is valid.
 */
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxiedIdp, type ProxiedIdp } from '../support/idp.js';
import { ensureBuiltCli, freePort, scratch, TokendProcess, until } from '../support/daemon.js';
import { find, K8S, render, type Obj } from '../support/k8s.js';
import { dockerfileFacts, metricsPort, podSpec, tokendConfigText, tokendContainer } from '../support/k8s-tokend.js';

describe("k8s base: the httpGet probes against the built tokend's metrics listener", () => {
  const s = scratch('tokend-probes-');
  let idp: ProxiedIdp;
  let tokend: TokendProcess | undefined;
  let probes: Record<'startup' | 'readiness' | 'liveness', Obj>;
  let base = '';

  beforeAll(async () => {
    expect(ensureBuiltCli()).toBe(true);
    const objects = render(join(K8S, 'base'));
    const workload = find(objects, 'Deployment', 'orders-app')[0]!;
    const container = tokendContainer(podSpec(workload));
    probes = { startup: container.startupProbe, readiness: container.readinessProbe, liveness: container.livenessProbe };
    const port = metricsPort(container);
    for (const p of Object.values(probes)) expect(p.httpGet.port).toBe(port.name);

    idp = await startProxiedIdp({ accessTokenTtlSec: 30, clients: [{ clientId: 'orders-client', clientSecret: 'orders-secret-1', scope: 'orders:read orders:write' }] });
    await idp.proxy.setMode('refuse');
    const config = parseYaml(tokendConfigText(objects, workload, dockerfileFacts().env.TOKEND_CONFIG as string).text) as Obj;
    // Kubelet connects to the pod IP; here the listener binds loopback on a free port instead.
    const metrics = await freePort();
    expect(config.metricsListen).toBe(`0.0.0.0:${port.containerPort}`);
    config.metricsListen = `127.0.0.1:${metrics}`;
    config.listen = `127.0.0.1:${await freePort()}`;
    for (const t of Object.values(config.tokens as Record<string, Obj>)) {
      t.issuer = idp.issuer;
      t.clientSecretFile = s.file('orders-secret', 'orders-secret-1\n');
      t.timeout = '1s';
    }
    tokend = new TokendProcess(['run', '--config', s.file('tokend.yaml', stringify(config))]);
    base = `http://127.0.0.1:${metrics}`;
    await until(async () => (await fetch(`${base}${probes.liveness.httpGet.path}`).catch(() => undefined))?.status === 200, 'the metrics listener', 10_000);
  }, 30_000);

  afterAll(async () => {
    await tokend?.stop();
    await idp?.close();
    s.cleanup();
  });

  const get = async (probe: Obj): Promise<number> => (await fetch(`${base}${probe.httpGet.path}`, { signal: AbortSignal.timeout(probe.timeoutSeconds * 1000) })).status;

  it('passes liveness while the IdP is unreachable, and holds start-up and readiness back until the token is valid', async () => {
    expect(await get(probes.liveness)).toBe(200);
    expect(await get(probes.readiness)).toBe(503);
    expect(await get(probes.startup)).toBe(503);
    await idp.proxy.setMode('pass');
    await until(async () => (await get(probes.startup)) === 200, 'the start-up probe to pass', 20_000, 200);
    expect(await get(probes.readiness)).toBe(200);
    expect(await get(probes.liveness)).toBe(200);
  });

  it('never serves a token on the probed port', async () => {
    const res = await fetch(`${base}/v1/token/orders`, { headers: { 'Tokend-Request': '1' } });
    expect(res.status).toBe(404);
    expect(await res.text()).not.toMatch(/access_token/);
  });
});
