import { startDevIdp, type DevIdp, type DevClient } from './idp.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { freePort, scratch, TokendProcess } from './daemon.js';

/** One token's settings for a generated config. */
export interface TokenSpec {
  name: string;
  clientId: string;
  secretFile?: string;
  grant: 'client_credentials' | 'refresh_token';
  refreshTokenFile?: string;
  clientAuth?: string;
  scope?: string;
  privateKeyFile?: string;
  extra?: Record<string, string | number | boolean>;
}

/**
 * A real IdP behind a fault proxy (discovery and every endpoint go through the proxy, so tests
 * can break the token endpoint while the rest works), a scratch dir for secrets and tokens, and
 * helpers to write a tokend config and start the built CLI.
 */
export interface World {
  idp: DevIdp;
  proxy: FaultProxy;
  dir: string;
  tokensDir: string;
  file(name: string, content: string, mode?: number): string;
  /** Writes a config and returns its path. */
  config(tokens: TokenSpec[], opts?: { port?: number; store?: string; top?: string }): Promise<{ path: string; port: number; url: string }>;
  start(configPath: string, env?: Record<string, string>): TokendProcess;
  close(): Promise<void>;
}

export const CLIENTS: DevClient[] = [
  { clientId: 'cc-client', clientSecret: 'cc-secret-value-1f2e', tokenEndpointAuthMethod: 'client_secret_basic', scope: 'api:read api:write' },
  { clientId: 'rt-client', clientSecret: 'rt-secret-value-9a8b', tokenEndpointAuthMethod: 'client_secret_post', scope: 'openid offline_access' },
];

export async function startWorld(opts: { accessTokenTtlSec?: number; rotate?: boolean; clients?: DevClient[]; jwtAccessTokenAudience?: string } = {}): Promise<World> {
  const proxy = await startFaultProxy();
  const idp = await startDevIdp({
    issuer: proxy.url,
    accessTokenTtlSec: opts.accessTokenTtlSec ?? 4,
    refreshTokenTtlSec: 3600,
    rotateRefreshTokens: opts.rotate ?? true,
    clients: [...CLIENTS, ...(opts.clients ?? [])],
    ...(opts.jwtAccessTokenAudience ? { jwtAccessTokenAudience: opts.jwtAccessTokenAudience } : {}),
  });
  proxy.setTarget(idp.url);
  const s = scratch();
  const procs: TokendProcess[] = [];
  const tokensDir = `${s.dir}/tokens`;
  let configs = 0;
  return {
    idp,
    proxy,
    dir: s.dir,
    tokensDir,
    file: s.file,
    async config(tokens, o = {}) {
      const port = o.port ?? (await freePort());
      const store = o.store ?? `store:\n  type: file\n  dir: ${tokensDir}\n`;
      const lines = [`listen: 127.0.0.1:${port}`, 'reconcile: "*/1 * * * * *"', store, o.top ?? '', 'tokens:'];
      for (const t of tokens) {
        lines.push(`  ${t.name}:`, `    issuer: ${proxy.url}`, `    clientId: ${t.clientId}`, `    grant: ${t.grant}`);
        if (t.secretFile) lines.push(`    clientSecretFile: ${t.secretFile}`);
        if (t.refreshTokenFile) lines.push(`    refreshTokenFile: ${t.refreshTokenFile}`);
        if (t.clientAuth) lines.push(`    clientAuth: ${t.clientAuth}`);
        if (t.scope) lines.push(`    scope: "${t.scope}"`);
        if (t.privateKeyFile) lines.push(`    privateKeyFile: ${t.privateKeyFile}`);
        // Short, so hangs end quickly; not so short that a loaded CI machine times out real answers.
        if (t.extra?.timeout === undefined) lines.push('    timeout: 2s');
        for (const [k, v] of Object.entries(t.extra ?? {})) lines.push(`    ${k}: ${typeof v === 'string' ? JSON.stringify(v) : v}`);
      }
      const path = s.file(`tokend-${port}-${++configs}.yaml`, lines.join('\n') + '\n');
      return { path, port, url: `http://127.0.0.1:${port}` };
    },
    start(configPath, env) {
      const p = new TokendProcess(['run', '--config', configPath], env);
      procs.push(p);
      return p;
    },
    async close() {
      await Promise.all(procs.map((p) => p.kill9()));
      await proxy.close();
      await idp.close();
      s.cleanup();
    },
  };
}
