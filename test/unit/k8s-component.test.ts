/**
 * The sidecar component (k8s/components/sidecar) added to workloads that are not ours: the
 * example application in k8s/examples/own-app (its own init container, ports, volumes and pod
 * settings), and a StatefulSet, a Job and an unlabelled Deployment written on the fly. Rendered
 * offline, validated against the API schemas; the application's own parts must come out exactly
 * as they went in.
 */
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { allContainers, find, K8S, put, render, renderOwn, unknownFieldsOf, validateSchema, workloads, type Obj } from '../support/k8s.js';
import { dockerfileFacts, listenPort, metricsPort, podSpec, tokendConfigText, tokendContainer } from '../support/k8s-tokend.js';
import { parseConfig } from '../../src/config/load.js';

const EXAMPLE = join(K8S, 'examples/own-app');
const DOCKERFILE = dockerfileFacts();
const source = parseYaml(readFileSync(join(EXAMPLE, 'deployment.yaml'), 'utf8')) as Obj;

/** The example's kustomization with extra components, from a temp dir. */
function exampleWith(components: readonly string[]): Obj[] {
  return renderOwn((dir, k8s) => {
    put(dir, 'kustomization.yaml', [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      `resources: [${k8s}/examples/own-app]`,
      `components: [${components.map((c) => `${k8s}/components/${c}`).join(', ')}]`,
      '',
    ].join('\n'));
  });
}

/** The pod spec without what the component adds: what the application's owner wrote. */
function withoutTokend(pod: Obj): Obj {
  const { initContainers, containers, volumes, ...rest } = pod;
  const strip = (list: Obj[] | undefined, names: string[]): Obj[] | undefined => {
    const kept = (list ?? []).filter((x) => !names.includes(x.name));
    return kept.length === 0 && list === undefined ? undefined : kept;
  };
  return {
    ...rest,
    ...(initContainers ? { initContainers: strip(initContainers, ['tokend']) } : {}),
    containers: strip(containers, ['tokend']),
    ...(volumes ? { volumes: strip(volumes, ['tokend-config', 'tokend-credentials']) } : {}),
  };
}

let example: Obj[] = [];
beforeAll(() => {
  example = render(EXAMPLE);
}, 30_000);

describe('k8s components/sidecar on an application of your own (examples/own-app)', () => {
  const deployment = (): Obj => find(example, 'Deployment', 'billing-api')[0] as Obj;

  it('renders offline, and every object validates against the API schema with no unknown field', () => {
    expect(example.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment']);
    for (const o of example) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
  });

  it("leaves the application's own containers, init containers, volumes and pod settings exactly as written", () => {
    const pod = podSpec(deployment());
    const { initContainers, ...expected } = source.spec.template.spec as Obj;
    expect(withoutTokend(pod)).toEqual({ ...expected, initContainers });
    expect(deployment().metadata).toEqual(source.metadata);
    expect(deployment().spec.selector).toEqual(source.spec.selector);
    // The only change to the template's metadata: the label the PodMonitor selects.
    expect(deployment().spec.template.metadata).toEqual({
      labels: { ...source.spec.template.metadata.labels, 'tokend/sidecar': 'enabled' },
    });
  });

  it('adds tokend as the first, restartable init container, gating the application on GET /readyz of its metrics port', () => {
    const pod = podSpec(deployment());
    expect(pod.initContainers.map((c: Obj) => c.name)).toEqual(['tokend', 'migrate']);
    const tokend = tokendContainer(pod);
    expect(tokend.restartPolicy).toBe('Always');
    expect(tokend.args).toEqual(DOCKERFILE.cmd);
    const port = metricsPort(tokend);
    expect(tokend.startupProbe.httpGet).toEqual({ path: '/readyz', port: port.name });
    expect(tokend.readinessProbe.httpGet).toEqual({ path: '/readyz', port: port.name });
    expect(tokend.livenessProbe.httpGet).toEqual({ path: '/healthz', port: port.name });
    // Port names are unique in a pod; the application has its own "metrics".
    const names = allContainers(pod).flatMap((c) => (c.ports ?? []).map((p: Obj) => p.name));
    expect(new Set(names).size).toBe(names.length);
    // Locked down on its own, since the pod's settings are the application's.
    expect(tokend.securityContext).toMatchObject({
      runAsUser: Number(DOCKERFILE.user.split(':')[0]),
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it("mounts the user's generated config and the credentials Secret into tokend only", () => {
    const pod = podSpec(deployment());
    const tokend = tokendContainer(pod);
    const { text, path } = tokendConfigText(example, deployment(), DOCKERFILE.env.TOKEND_CONFIG as string);
    expect(path).toBe(DOCKERFILE.env.TOKEND_CONFIG);
    const config = parseConfig(text, { env: {}, source: 'tokend.yaml' });
    expect(config.tokens.map((t) => t.name)).toEqual(['billing']);
    // The generated ConfigMap's hashed name is what the volume refers to.
    expect(find(example, 'ConfigMap')[0]!.metadata.name).toMatch(/^tokend-config-\w+$/);
    expect(metricsPort(tokend).containerPort).toBe(listenPort(config.metricsListen));

    const credentials = (pod.volumes as Obj[]).find((v) => v.secret?.secretName === 'tokend-credentials') as Obj;
    const mount = (tokend.volumeMounts as Obj[]).find((m) => m.name === credentials.name) as Obj;
    expect(mount.readOnly).toBe(true);
    const secretFile = (config.tokens[0]!.clientSecret as { kind: string; path: string }).path;
    expect(posix.dirname(secretFile)).toBe(mount.mountPath);
    for (const c of allContainers(pod).filter((x) => x.name !== 'tokend')) {
      expect((c.volumeMounts ?? []).map((m: Obj) => m.name), c.name).not.toContain(credentials.name);
    }
    // No pod fsGroup here, so the files are root's: readable, never writable or executable.
    expect(pod.securityContext.fsGroup).toBeUndefined();
    expect(credentials.secret.defaultMode & 0o333).toBe(0);
  });
});

describe('k8s components/sidecar on other kinds of workload', () => {
  let objects: Obj[] = [];
  const container = (name: string): string => `{name: ${name}, image: registry.example.com/${name}:1}`;
  const others = {
    statefulset: `apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ledger, labels: {tokend/sidecar: enabled}}\nspec:\n  serviceName: ledger\n  selector: {matchLabels: {app: ledger}}\n  template:\n    metadata: {labels: {app: ledger}}\n    spec:\n      containers: [${container('ledger')}]\n`,
    job: `apiVersion: batch/v1\nkind: Job\nmetadata: {name: nightly-export, labels: {tokend/sidecar: enabled}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [${container('export')}]\n`,
    unlabelled: `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: unrelated}\nspec:\n  selector: {matchLabels: {app: unrelated}}\n  template:\n    metadata: {labels: {app: unrelated}}\n    spec:\n      containers: [${container('unrelated')}]\n`,
  };

  beforeAll(() => {
    objects = renderOwn((dir, k8s) => {
      for (const [name, text] of Object.entries(others)) put(dir, `${name}.yaml`, text);
      put(dir, 'config.yaml', 'metricsListen: 0.0.0.0:9477\ntokens:\n  t:\n    tokenEndpoint: https://idp.example.com/token\n    clientId: c\n    clientSecretFile: /var/run/secrets/tokend/c\n    grant: client_credentials\n');
      put(dir, 'kustomization.yaml', [
        `resources: [${Object.keys(others).map((n) => `${n}.yaml`).join(', ')}]`,
        `components: [${k8s}/components/sidecar]`,
        'configMapGenerator: [{name: tokend-config, files: [config.yaml]}]',
        '',
      ].join('\n'));
    });
  }, 30_000);

  it('adds tokend to a labelled StatefulSet and Job, which then validate, and leaves an unlabelled Deployment alone', () => {
    for (const o of objects) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
    for (const kind of ['StatefulSet', 'Job']) {
      const [w] = find(objects, kind);
      const pod = podSpec(w!);
      expect(pod.initContainers.map((c: Obj) => c.name), kind).toEqual(['tokend']);
      expect(pod.initContainers[0].restartPolicy, kind).toBe('Always');
      expect(pod.volumes.map((v: Obj) => v.name).sort(), kind).toEqual(['tokend-config', 'tokend-credentials']);
    }
    // A Job with a native sidecar completes when its own containers do; kubelet then stops tokend.
    expect(podSpec(find(objects, 'Job')[0]!).restartPolicy).toBe('Never');
    const unrelated = find(objects, 'Deployment', 'unrelated')[0]!;
    expect(unrelated).toEqual(parseYaml(others.unlabelled));
    expect(workloads(objects)).toHaveLength(3);
  });
});

describe('k8s components/exec-probes and components/legacy-sidecar on examples/own-app', () => {
  it('exec-probes swaps each probe whole for `tokend health`, leaving no httpGet behind', () => {
    const objects = exampleWith(['exec-probes']);
    const tokend = tokendContainer(podSpec(find(objects, 'Deployment')[0]!));
    for (const probe of [tokend.startupProbe, tokend.readinessProbe, tokend.livenessProbe]) {
      expect(probe.httpGet).toBeUndefined();
      expect(probe.exec.command.slice(0, DOCKERFILE.entrypoint.length + 1)).toEqual([...DOCKERFILE.entrypoint, 'health']);
    }
    for (const o of objects) expect(() => validateSchema(o)).not.toThrow();
  });

  it("legacy-sidecar moves tokend to the first container and keeps the application's own init container", () => {
    const objects = exampleWith(['legacy-sidecar']);
    const pod = podSpec(find(objects, 'Deployment')[0]!);
    expect(pod.initContainers.map((c: Obj) => c.name)).toEqual(['migrate']);
    expect(pod.containers.map((c: Obj) => c.name)).toEqual(['tokend', 'api']);
    expect(pod.containers[0].restartPolicy).toBeUndefined();
    expect(pod.containers[0].lifecycle.postStart.exec.command).toContain('--ready');
    for (const o of objects) {
      expect(() => validateSchema(o)).not.toThrow();
      expect(unknownFieldsOf(o)).toEqual([]);
    }
  });
});
