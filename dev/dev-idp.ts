/**
 * `npm run dev-idp`: the development identity provider on its own, so you can write a tokend
 * config by hand and run tokend against it before pointing the config at your real IdP. Prints
 * the issuer, the clients with their secrets, a fresh refresh-token seed and a config that uses
 * them; Enter prints another seed; Ctrl-C stops it.
 *
 * Options (environment): DEV_IDP_PORT (default 9400; 0 lets the OS choose), DEV_IDP_TOKEN_TTL
 * (access token lifetime in seconds, default 60).
 */
import { createInterface } from 'node:readline';
import { DEMO_CLIENTS, startDevIdp, type DevClient } from './idp.js';

const port = Number(process.env.DEV_IDP_PORT ?? 9400);
const ttl = Number(process.env.DEV_IDP_TOKEN_TTL ?? 60);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`DEV_IDP_PORT must be a port number, not ${JSON.stringify(process.env.DEV_IDP_PORT)}`);
if (!Number.isFinite(ttl) || ttl < 2) fail('DEV_IDP_TOKEN_TTL must be a number of seconds, at least 2');

function fail(message: string): never {
  process.stderr.write(`dev-idp: ${message}\n`);
  process.exit(2);
}

const idp = await startDevIdp({ port, accessTokenTtlSec: ttl, refreshTokenTtlSec: 3600, rotateRefreshTokens: true, clients: [...DEMO_CLIENTS] }).catch(
  (err: NodeJS.ErrnoException) => fail(err.code === 'EADDRINUSE' ? `port ${port} is in use: set DEV_IDP_PORT (0 picks a free one)` : String(err)),
);
const [cc, rt] = DEMO_CLIENTS as [DevClient, DevClient];
const seed = await idp.mintRefreshToken(rt.clientId, rt.scope);

/** A tokend config for the dev IdP's two clients: the part a user copies. */
function config(refreshToken: string): string {
  return [
    'listen: 127.0.0.1:8477',
    'store:',
    '  type: file                     # the refresh token rotates: keep it in a store that outlives tokend',
    '  dir: /tmp/tokend-dev-tokens',
    'tokens:',
    '  orders:',
    `    issuer: ${idp.issuer}`,
    `    clientId: ${cc.clientId}`,
    `    clientSecret: ${cc.clientSecret}   # or clientSecretFile: a file holding it`,
    '    grant: client_credentials',
    `    scope: "${cc.scope}"`,
    '  inventory:',
    `    issuer: ${idp.issuer}`,
    `    clientId: ${rt.clientId}`,
    `    clientSecret: ${rt.clientSecret}`,
    `    clientAuth: ${rt.tokenEndpointAuthMethod}`,
    '    grant: refresh_token',
    `    refreshToken: ${refreshToken}   # the seed; or refreshTokenFile: a file holding it`,
    `    scope: "${rt.scope}"`,
  ].join('\n');
}

const client = (c: DevClient, grant: string): string =>
  `  ${c.clientId.padEnd(18)} secret ${String(c.clientSecret).padEnd(24)} auth ${String(c.tokenEndpointAuthMethod).padEnd(21)} grant ${grant.padEnd(20)} scope "${c.scope}"`;

process.stdout.write(
  [
    'tokend development identity provider (oidc-provider on loopback; Ctrl-C stops it)',
    '',
    `issuer:   ${idp.issuer}`,
    `tokens:   access tokens live ${ttl} s; refresh tokens rotate on every use (the old one is then refused) and live 1 h`,
    '',
    'clients:',
    client(cc, 'client_credentials'),
    client(rt, 'refresh_token'),
    '',
    `refresh-token seed for ${rt.clientId} (fresh; single use once tokend refreshes with it):`,
    `seed: ${seed}`,
    'Press Enter for another seed. Give each seed to one store only: two stores (two directories,',
    'prefixes or Redis instances) refreshing one seed race, and the IdP revokes the chain.',
    '',
    'A tokend config for these clients: save it as tokend.yaml and run `npx tokend run --config tokend.yaml`',
    '(after `npm ci && npm run build`). For your real IdP, change issuer, clientId, the secrets and the seed.',
    '---',
    config(seed),
    '---',
    '',
  ].join('\n'),
);

// Enter: another seed (the grant behind the printed one is untouched).
const lines = createInterface({ input: process.stdin });
lines.on('line', () => {
  void idp.mintRefreshToken(rt.clientId, rt.scope).then((s) => process.stdout.write(`seed: ${s}\n`));
});

async function stop(): Promise<void> {
  lines.close();
  await idp.close();
  process.exit(0);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
