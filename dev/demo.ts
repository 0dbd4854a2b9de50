/**
 * `npm run demo`: a local development identity provider (oidc-provider, short-lived tokens,
 * rotating refresh tokens) and tokend against it with the file store, so a newcomer sees refresh
 * events within a minute and can curl the endpoint. Ctrl-C stops both.
 *
 * Options (environment): DEMO_SECONDS=N stops after N seconds and prints the IdP's grant count;
 * DEMO_LISTEN=host:port (default 127.0.0.1:8477); DEMO_TOKEN_TTL=seconds (default 10);
 * DEMO_SECRETLESS=1 runs the secretless flow instead (dev/demo-secretless.ts, docs/secretless.md):
 * no client secret, key or refresh token anywhere, only a stand-in cluster's service-account token.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startDevIdp } from './idp.js';

const ttl = Number(process.env.DEMO_TOKEN_TTL ?? 10);
const listen = process.env.DEMO_LISTEN ?? '127.0.0.1:8477';
const seconds = process.env.DEMO_SECONDS ? Number(process.env.DEMO_SECONDS) : undefined;

const work = mkdtempSync(join(tmpdir(), 'tokend-demo-'));
if (process.env.DEMO_SECRETLESS === '1') {
  const { runSecretlessDemo } = await import('./demo-secretless.js');
  // Runs until Ctrl-C or DEMO_SECONDS, then exits the process.
  await runSecretlessDemo({ work, listen, ttl, seconds });
}
const secrets = join(work, 'secrets');
const tokens = join(work, 'tokens');
mkdirSync(secrets, { mode: 0o700 });

const idp = await startDevIdp({
  accessTokenTtlSec: ttl,
  refreshTokenTtlSec: 3600,
  rotateRefreshTokens: true,
  clients: [
    { clientId: 'orders-client', clientSecret: 'demo-orders-secret', tokenEndpointAuthMethod: 'client_secret_basic', scope: 'orders:read orders:write' },
    { clientId: 'inventory-client', clientSecret: 'demo-inventory-secret', tokenEndpointAuthMethod: 'client_secret_post', scope: 'openid offline_access' },
  ],
});
const seed = await idp.mintRefreshToken('inventory-client', 'openid offline_access');
writeFileSync(join(secrets, 'orders-secret'), 'demo-orders-secret\n', { mode: 0o600 });
writeFileSync(join(secrets, 'inventory-secret'), 'demo-inventory-secret\n', { mode: 0o600 });
writeFileSync(join(secrets, 'inventory-refresh-token'), seed + '\n', { mode: 0o600 });

const configPath = join(work, 'tokend.yaml');
writeFileSync(
  configPath,
  `# written by npm run demo
listen: ${listen}
store:
  type: file
  dir: ${tokens}
  mode: "0600"
tokens:
  orders:
    issuer: ${idp.issuer}
    clientId: orders-client
    clientSecretFile: ${join(secrets, 'orders-secret')}
    grant: client_credentials
    scope: "orders:read orders:write"
  inventory:
    issuer: ${idp.issuer}
    clientId: inventory-client
    clientSecretFile: ${join(secrets, 'inventory-secret')}
    clientAuth: client_secret_post
    grant: refresh_token
    refreshTokenFile: ${join(secrets, 'inventory-refresh-token')}
`,
);

const endpoint = listen.startsWith('unix:') ? listen : `http://${listen}`;
process.stderr.write(
  [
    '',
    `dev identity provider: ${idp.issuer} (access tokens live ${ttl} s; refresh tokens rotate)`,
    `tokend config:         ${configPath}`,
    `token files:           ${tokens}/orders, ${tokens}/inventory`,
    '',
    'try, in another terminal:',
    `  curl -s -H 'Tokend-Request: 1' ${endpoint}/v1/token/orders`,
    `  curl -s ${endpoint}/readyz ; curl -s ${endpoint}/metrics | grep tokend_`,
    `  node dist/cli.js get inventory --url ${endpoint}`,
    `  cat ${tokens}/orders.json`,
    '',
    'refresh events follow (JSON, one per line); Ctrl-C stops.',
    '',
  ].join('\n'),
);

const cli = resolve(import.meta.dirname, '../../dist/cli.js');
const child = spawn(process.execPath, [cli, 'run', '--config', configPath], { stdio: ['ignore', 'inherit', 'inherit'] });

let finished = false;
async function finish(code: number): Promise<void> {
  if (finished) return;
  finished = true;
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  const stats = idp.stats();
  process.stderr.write(`\nIdP served: ${JSON.stringify(stats.grants)}; errors: ${JSON.stringify(stats.errors)}\n`);
  await idp.close();
  rmSync(work, { recursive: true, force: true });
  process.exit(code);
}

child.once('exit', (code) => void finish(code ?? 1));
process.once('SIGINT', () => void finish(0));
process.once('SIGTERM', () => void finish(0));
if (seconds !== undefined) setTimeout(() => void finish(0), seconds * 1000);
