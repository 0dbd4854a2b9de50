/**
 * What the manifest tests need to know about tokend in rendered objects: the Dockerfile facts the
 * manifests must agree with, the tokend container and its config, the metrics port, and the Redis
 * overlay's ACL users.
 */
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { expect } from 'vitest';
import { find, ROOT, workloads, type Obj } from './k8s.js';
import type { ListenAddress } from '../../src/config/types.js';

/** The runtime stage of the Dockerfile: exec-form ENTRYPOINT and CMD, ENV and USER. */
export interface DockerfileFacts {
  readonly entrypoint: string[];
  readonly cmd: string[];
  readonly env: Record<string, string>;
  readonly user: string;
}

/** Reads the Dockerfile's runtime stage (the last FROM). */
export function dockerfileFacts(): DockerfileFacts {
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

/** The pod spec of a workload. */
export function podSpec(workload: Obj): Obj {
  return workload.spec.template.spec;
}

/** The one container named tokend, init or ordinary. */
export function tokendContainer(pod: Obj): Obj {
  const found = [...(pod.initContainers ?? []), ...(pod.containers ?? [])].filter((c: Obj) => c.name === 'tokend');
  expect(found, 'one tokend container').toHaveLength(1);
  return found[0] as Obj;
}

/** The port tokend's metrics/health listener is published on (named tokend-metrics). */
export function metricsPort(tokend: Obj): { name: string; containerPort: number } {
  const port = ((tokend.ports ?? []) as Obj[]).find((p) => p.name === 'tokend-metrics');
  expect(port, 'tokend publishes a port named tokend-metrics').toBeDefined();
  return port as { name: string; containerPort: number };
}

/** The TCP port of a parsed listen address (undefined for a unix socket or none). */
/** The one object of a kind (and name); fails the test unless there is exactly one. */
export function one(objects: readonly Obj[], kind: string, name?: string): Obj {
  const found = find(objects, kind, name);
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0] as Obj;
}

/** The application Deployment: the one that carries tokend. */
export function appDeployment(objects: readonly Obj[]): Obj {
  return one(objects, 'Deployment', 'orders-app');
}

/** The application's own container in a pod spec. */
export function appContainer(pod: Obj): Obj {
  const found = (pod.containers ?? []).filter((c: Obj) => c.name === 'app');
  expect(found, 'one app container').toHaveLength(1);
  return found[0] as Obj;
}

export function listenPort(addr: ListenAddress | undefined): number | undefined {
  return addr?.kind === 'tcp' ? addr.port : undefined;
}

/**
 * The tokend config file text from the ConfigMap mounted into the workload's tokend, and the
 * path it is mounted at (the container's TOKEND_CONFIG, else the image's `defaultPath`).
 */
export function tokendConfigText(objects: readonly Obj[], workload: Obj, defaultPath: string): { text: string; path: string } {
  const pod = podSpec(workload);
  const tokend = tokendContainer(pod);
  const env = Object.fromEntries((tokend.env ?? []).map((e: Obj) => [e.name, e.value]));
  const path = (env.TOKEND_CONFIG as string | undefined) ?? defaultPath;
  const mount = (tokend.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`));
  expect(mount, `a volume mounted above ${path}`).toBeDefined();
  const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name);
  expect(volume?.configMap, `volume ${mount!.name} is a ConfigMap`).toBeDefined();
  const cms = find(objects, 'ConfigMap', volume!.configMap.name);
  expect(cms, `ConfigMap ${volume!.configMap.name}`).toHaveLength(1);
  const key = posix.relative(mount!.mountPath, path);
  expect(cms[0]!.data, `ConfigMap ${volume!.configMap.name} has ${key}`).toHaveProperty([key]);
  return { text: cms[0]!.data[key] as string, path };
}

/** One Redis ACL user of the redis overlay: its template line, and the Secret key its password comes from. */
export interface AclUser {
  readonly rule: string;
  readonly secret?: { name: string; key: string };
}

/**
 * The ACL users in the redis overlay: the template's `user` lines (comments dropped, as
 * render-acl.sh does) and, for each `{{USER}}` placeholder, the Secret key projected into the
 * redis pod as the file named USER.
 */
export function aclUsers(objects: readonly Obj[]): Map<string, AclUser> {
  const redis = workloads(objects).find((w) => w.metadata.name === 'redis') as Obj;
  const pod = podSpec(redis);
  const init = (pod.initContainers as Obj[]).find((c) => c.name === 'acl') as Obj;
  const env = Object.fromEntries((init.env as Obj[]).map((e) => [e.name, e.value])) as Record<string, string>;
  const templateMount = (init.volumeMounts as Obj[]).find((m) => env.ACL_TEMPLATE!.startsWith(`${m.mountPath}/`)) as Obj;
  const cmName = (pod.volumes as Obj[]).find((v) => v.name === templateMount.name)?.configMap?.name as string;
  const template = find(objects, 'ConfigMap', cmName)[0]?.data?.[posix.relative(templateMount.mountPath, env.ACL_TEMPLATE!)] as string;
  const passwordsMount = (init.volumeMounts as Obj[]).find((m) => m.mountPath === env.ACL_PASSWORDS_DIR) as Obj;
  const projected = (pod.volumes as Obj[]).find((v) => v.name === passwordsMount.name)?.projected as Obj;
  const fileToSecret = new Map<string, { name: string; key: string }>();
  for (const source of projected.sources as Obj[]) {
    for (const item of source.secret.items as Obj[]) fileToSecret.set(item.path, { name: source.secret.name, key: item.key });
  }
  const users = new Map<string, AclUser>();
  for (const line of template.split('\n').filter((l) => /^user /.test(l))) {
    const name = line.split(' ')[1] as string;
    const placeholder = /\{\{([^}]+)\}\}/.exec(line)?.[1];
    const secret = placeholder === undefined ? undefined : fileToSecret.get(placeholder);
    users.set(name, secret ? { rule: line, secret } : { rule: line });
  }
  return users;
}
