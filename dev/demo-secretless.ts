/**
 * `DEMO_SECRETLESS=1 npm run demo`: the secretless flow of docs/secretless.md on one machine.
 * A stand-in Kubernetes cluster (dev/cluster.ts) issues a service-account token into a projected
 * volume laid out the way kubelet does it, and rotates it every DEMO_SA_ROTATE seconds (default
 * 20); the dev IdP trusts that cluster (JWT bearer grant and token exchange, dev/idp-federation.ts).
 * tokend gets `federated` with the service-account token as the grant itself, and `orders`, that
 * token exchanged for a narrower audience. No client secret, key or refresh token exists anywhere.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ProjectedVolume, startTestCluster } from './cluster.js';
import { JWT_BEARER_GRANT, startDevIdp, TOKEN_EXCHANGE_GRANT } from './idp.js';

/** Settings shared with the classic demo. */
export interface SecretlessDemoOptions {
  /** Scratch directory (removed at the end). */
  readonly work: string;
  readonly listen: string;
  /** Access token lifetime at the IdP, seconds. */
  readonly ttl: number;
  /** Stop after this many seconds. */
  readonly seconds?: number | undefined;
}

const NAMESPACE = 'demo';
const SERVICE_ACCOUNT = 'orders-app';

/** Runs the demo until Ctrl-C (or `seconds`), then exits the process; never resolves. (A script in order: set-up, config, child, shutdown; longer than 60 lines.) */
export async function runSecretlessDemo(o: SecretlessDemoOptions): Promise<never> {
  const rotateSec = Number(process.env.DEMO_SA_ROTATE ?? 20);
  const subject = `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`;
  const cluster = await startTestCluster();
  const idp = await startDevIdp({
    accessTokenTtlSec: o.ttl,
    federation: { trust: [cluster.issuer], subjects: [subject] },
    clients: [
      { clientId: 'orders-app', tokenEndpointAuthMethod: 'none', grantTypes: [JWT_BEARER_GRANT] },
      { clientId: 'orders-exchanger', tokenEndpointAuthMethod: 'none', grantTypes: [TOKEN_EXCHANGE_GRANT] },
    ],
  });
  const audience = `${idp.issuer}/token`;
  // What kubelet does for a projected serviceAccountToken volume (audience: the IdP's token endpoint).
  const volume = new ProjectedVolume(join(o.work, 'serviceaccount'));
  const rotate = async (): Promise<void> => {
    const m = await cluster.mint({ namespace: NAMESPACE, serviceAccount: SERVICE_ACCOUNT, audience, expiresInSec: 600 });
    volume.write(m.token);
    process.stderr.write(`kubelet (stand-in): wrote a new service-account token into ${volume.path} (jti ${m.jti})\n`);
  };
  await rotate();
  const rotation = setInterval(() => void rotate(), rotateSec * 1000);

  const tokens = join(o.work, 'tokens');
  const configPath = join(o.work, 'tokend.yaml');
  writeFileSync(
    configPath,
    `# written by DEMO_SECRETLESS=1 npm run demo: no secret, key or refresh token anywhere
listen: ${o.listen}
store:
  type: file
  dir: ${tokens}
  mode: "0600"
tokens:
  federated:
    issuer: ${idp.issuer}
    clientId: orders-app
    clientAuth: none
    grant: jwt_bearer
    assertionFile: ${volume.path}
    resource: https://api.demo
  orders:
    issuer: ${idp.issuer}
    clientId: orders-exchanger
    clientAuth: none
    grant: token_exchange
    subjectToken: federated
    audience: https://orders.demo
`,
  );

  const endpoint = o.listen.startsWith('unix:') ? o.listen : `http://${o.listen}`;
  process.stderr.write(
    [
      '',
      `stand-in cluster issuer: ${cluster.issuer} (try: curl -s ${cluster.issuer}/.well-known/openid-configuration)`,
      `service-account token:   ${volume.path} (${subject}, aud ${audience}; rotated every ${rotateSec} s)`,
      `dev identity provider:   ${idp.issuer} (trusts the cluster; access tokens live ${o.ttl} s)`,
      `tokend config:           ${configPath} (no secret in it: grep -i secret finds nothing)`,
      '',
      'try, in another terminal:',
      `  curl -s -H 'Tokend-Request: 1' ${endpoint}/v1/token/orders    # issued_token_type says what the exchange issued`,
      `  cat ${tokens}/orders.json`,
      `  curl -s ${endpoint}/metrics | grep -E 'tokend_(federated|client_assertion)'`,
      '',
      'refresh events follow (JSON, one per line); Ctrl-C stops.',
      '',
    ].join('\n'),
  );

  const cli = resolve(import.meta.dirname, '../../dist/cli.js');
  const child = spawn(process.execPath, [cli, 'run', '--config', configPath], { stdio: ['ignore', 'inherit', 'inherit'] });
  let finished = false;
  const finish = async (code: number): Promise<void> => {
    if (finished) return;
    finished = true;
    clearInterval(rotation);
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    const stats = idp.stats();
    process.stderr.write(`\nIdP served: ${JSON.stringify(stats.grants)}; errors: ${JSON.stringify(stats.errors)}\n`);
    await idp.close();
    await cluster.close();
    rmSync(o.work, { recursive: true, force: true });
    process.exit(code);
  };
  child.once('exit', (code) => void finish(code ?? 1));
  process.once('SIGINT', () => void finish(0));
  process.once('SIGTERM', () => void finish(0));
  if (o.seconds !== undefined) setTimeout(() => void finish(0), o.seconds * 1000);
  return new Promise<never>(() => undefined);
}
