/**
 * The Redis overlay (k8s/overlays/redis) checked offline: tokend and the application each log in
 * as their own ACL user, whose password comes from the Secret that client reads and reaches the
 * redis pod's ACL renderer under that user's name; tokend's user is limited to its prefix and
 * channel, the application's to reading its token's two keys. test/integration/redis-acl.test.ts
 * runs the same wiring against a real redis-server.
 */
import { join, posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { find, K8S, render, type Obj } from '../support/k8s.js';
import { aclUsers, appContainer, appDeployment, dockerfileFacts, one, podSpec, tokendConfigText, tokendContainer } from '../support/k8s-tokend.js';

const DOCKERFILE = dockerfileFacts();
let rendered: Obj[] = [];
beforeAll(() => {
  rendered = render(join(K8S, 'overlays/redis'));
}, 30_000);


describe('k8s overlays/redis: Redis store with ACL users', () => {
  const objects = (): Obj[] => rendered;
  const redisStore = (): { url: string; prefix: string; passwordFile: string } => (parseYaml(tokendConfigText(rendered, appDeployment(rendered), DOCKERFILE.env.TOKEND_CONFIG as string).text) as Obj).store;
  const redisPod = (): Obj => one(objects(), 'Deployment', 'redis').spec.template.spec;

  it('points the store at the Redis Service of the try-out manifest, which only the application pods may reach', () => {
    const url = new URL(redisStore().url);
    const service = one(objects(), 'Service', url.hostname);
    expect(service.spec.ports.map((p: Obj) => p.port)).toContain(Number(url.port || 6379));
    const redis = one(objects(), 'Deployment', 'redis');
    expect(redis.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    const container = redis.spec.template.spec.containers[0] as Obj;
    expect(container.ports.map((p: Obj) => p.name)).toContain(service.spec.ports[0].targetPort);
    const policy = one(objects(), 'NetworkPolicy', 'redis');
    expect(policy.spec.podSelector.matchLabels).toEqual(service.spec.selector);
    expect(appDeployment(objects()).spec.template.metadata.labels).toMatchObject(policy.spec.ingress[0].from[0].podSelector.matchLabels);
  });

  it("starts Redis with the ACL file its init container renders, and tokend's password is the one its ACL user gets", () => {
    const pod = redisPod();
    const [init] = pod.initContainers as Obj[];
    const env = Object.fromEntries((init!.env as Obj[]).map((e) => [e.name, e.value]));
    const redis = pod.containers[0] as Obj;
    expect(redis.args[redis.args.indexOf('--aclfile') + 1]).toBe(env.ACL_FILE);
    expect(redis.args.join(' ')).not.toContain('requirepass');
    // The ACL file is on a volume both containers mount, in memory.
    const aclMount = (c: Obj): Obj | undefined => (c.volumeMounts as Obj[]).find((m) => (env.ACL_FILE as string).startsWith(`${m.mountPath}/`));
    expect(aclMount(redis)?.name).toBe(aclMount(init!)?.name);
    expect((pod.volumes as Obj[]).find((v) => v.name === aclMount(redis)?.name)?.emptyDir?.medium).toBe('Memory');

    // tokend logs in as the URL's user with store.passwordFile; that file's Secret key is projected
    // into the redis pod under the same user's name.
    const user = decodeURIComponent(new URL(redisStore().url).username);
    expect(user).not.toBe('');
    const users = aclUsers(objects());
    expect(users.get(user)?.secret).toEqual({ name: 'tokend-credentials', key: posix.basename(redisStore().passwordFile) });
    // The rest of tokend-credentials never reaches the redis pod.
    const sources = (pod.volumes as Obj[]).flatMap((v) => v.projected?.sources ?? []).filter((s: Obj) => s.secret?.name === 'tokend-credentials');
    expect(sources.flatMap((s: Obj) => s.secret.items.map((i: Obj) => i.key))).toEqual([posix.basename(redisStore().passwordFile)]);
  });

  it("gives tokend's user the prefix and channel only, and the application a read-only user for its token's keys", () => {
    const { prefix } = redisStore();
    const users = aclUsers(objects());
    expect(users.get('default')?.rule).toMatch(/^user default off\b/);
    const tokend = users.get(decodeURIComponent(new URL(redisStore().url).username))!;
    expect(tokend.rule).toContain(` resetkeys ~${prefix}* `);
    expect(tokend.rule).toContain(` resetchannels &${prefix}events `);
    expect(tokend.rule).toContain(' -@all ');

    const app = appContainer(podSpec(appDeployment(objects())));
    const env = Object.fromEntries((app.env as Obj[]).map((e) => [e.name, e.value]));
    const reader = users.get(env.REDIS_USER)!;
    expect(reader.rule.match(/[%~&]\S*/g)).toEqual([`%R~${env.TOKEN_KEY}`, `%R~${env.TOKEN_KEY}:meta`]);
    expect(reader.rule).toContain(' resetchannels -@all +get +pttl +ttl +info');
    // The application's password: from a Secret mounted into the application only, the same key
    // the redis pod hashes for its user.
    const mount = (app.volumeMounts as Obj[]).find((m) => (env.REDIS_PASSWORD_FILE as string).startsWith(`${m.mountPath}/`))!;
    const pod = podSpec(appDeployment(objects()));
    const volume = (pod.volumes as Obj[]).find((v) => v.name === mount.name)!;
    expect(reader.secret).toEqual({ name: volume.secret.secretName, key: posix.relative(mount.mountPath, env.REDIS_PASSWORD_FILE) });
    expect((tokendContainer(pod).volumeMounts as Obj[]).map((m) => m.name)).not.toContain(mount.name);
    expect(find(objects(), 'Secret', volume.secret.secretName)).toHaveLength(1);
  });

  it('runs more than one replica: they share one grant through Redis', () => {
    expect(appDeployment(objects()).spec.replicas).toBeGreaterThan(1);
  });
});
