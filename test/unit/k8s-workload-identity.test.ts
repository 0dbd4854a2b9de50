/**
 * k8s/overlays/workload-identity, checked offline: it renders with `kubectl kustomize`, every object
 * validates against the Kubernetes API schemas, it ships no Secret and no secret volume, tokend's
 * only credential is a projected service-account token mounted into tokend alone, with an audience
 * and lifetime the IdP accepts, and the application mounts no credential at all.
 */
import { posix, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { allContainers, render, unknownFieldsOf, validateSchema, type Obj as K8sObject } from '../support/k8s.js';

const OVERLAY = resolve(import.meta.dirname, '../../k8s/overlays/workload-identity');

let objects: K8sObject[];
let pod: K8sObject;
let config: Config;
let rawConfig: string;

const containers = (): K8sObject[] => allContainers(pod);
const container = (name: string): K8sObject => {
  const found = containers().filter((c) => c.name === name);
  expect(found, `one ${name} container`).toHaveLength(1);
  return found[0] as K8sObject;
};
const volume = (name: string): K8sObject | undefined => (pod.volumes as K8sObject[]).find((v) => v.name === name);

beforeAll(() => {
  objects = render(OVERLAY);
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'orders-app') as K8sObject;
  pod = deployment.spec.template.spec;
  const mount = (container('tokend').volumeMounts as K8sObject[]).find((m) => m.mountPath === '/etc/tokend') as K8sObject;
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume(mount.name)?.configMap?.name) as K8sObject;
  rawConfig = cm.data['config.yaml'] as string;
  config = parseConfig(rawConfig, { env: {}, source: 'config.yaml' });
}, 30_000);

describe('k8s overlays/workload-identity: no Secret in the pod', () => {
  it('renders offline, and every object validates against the Kubernetes API schema with no unknown field', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'ServiceAccount']);
    for (const o of objects) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
  });

  it('contains no Secret, no secret volume and no reference to a Secret anywhere', () => {
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    for (const v of pod.volumes as K8sObject[]) {
      expect(v.secret, `volume ${v.name}`).toBeUndefined();
      for (const s of v.projected?.sources ?? []) expect(s.secret, `volume ${v.name}`).toBeUndefined();
    }
    for (const c of containers()) {
      expect(JSON.stringify(c.env ?? []), c.name).not.toContain('secretKeyRef');
      expect(JSON.stringify(c.envFrom ?? []), c.name).not.toContain('secretRef');
    }
  });

  it('gives tokend a client assertion from a projected service-account token, with the IdP as audience and a 10 to 60 minute life', () => {
    const orders = config.tokens.find((t) => t.name === 'orders');
    expect(orders).toMatchObject({ clientAuth: 'client_assertion', grant: 'client_credentials' });
    expect(orders?.clientSecret).toBeUndefined();
    expect(rawConfig).not.toMatch(/^\s*(clientSecret|clientSecretFile|privateKeyFile|refreshToken|refreshTokenFile)\s*:/m);

    const path = orders?.clientAssertionFile as string;
    const mount = (container('tokend').volumeMounts as K8sObject[]).find((m) => path.startsWith(`${m.mountPath}/`)) as K8sObject;
    expect(mount, `${path} is under a tokend mount`).toBeDefined();
    expect(mount.readOnly).toBe(true);
    const projected = volume(mount.name)?.projected as K8sObject;
    const source = (projected.sources as K8sObject[]).find((s) => s.serviceAccountToken)?.serviceAccountToken as K8sObject;
    expect(source.path).toBe(posix.relative(mount.mountPath, path));
    // Keycloak's federated client authentication expects the realm (the issuer) as audience.
    expect(source.audience).toBe(orders?.issuer);
    expect(source.expirationSeconds).toBeGreaterThanOrEqual(600);
    expect(source.expirationSeconds).toBeLessThanOrEqual(3600);
    // Readable through the fsGroup (tokend), by nobody else.
    expect(projected.defaultMode & 0o007).toBe(0);
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
  });

  it("runs as its own service account and mounts no token automatically, in any container", () => {
    const sa = objects.find((o) => o.kind === 'ServiceAccount') as K8sObject;
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(sa.metadata.name).not.toBe('default');
    expect(sa.automountServiceAccountToken).toBe(false);
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('mounts no credential into the application: neither the projected token nor anything else but tokend shares', () => {
    const credentialVolumes = (pod.volumes as K8sObject[]).filter((v) => v.secret || v.projected).map((v) => v.name);
    expect(credentialVolumes.length).toBeGreaterThan(0);
    for (const c of containers().filter((x) => x.name !== 'tokend')) {
      const mounted = (c.volumeMounts ?? []).map((m: K8sObject) => m.name);
      for (const v of credentialVolumes) expect(mounted, `${c.name} mounts ${v}`).not.toContain(v);
      expect(c.volumeMounts ?? [], c.name).toEqual([]);
    }
  });
});
