/**
 * A stand-in for a Kubernetes cluster, for the secretless demo and tests (never part of the
 * shipped daemon):
 * - a service-account token issuer (what the API server's --service-account-issuer is): its own
 *   RS256 signing key, OIDC discovery and JWKS served over HTTP on 127.0.0.1 at the paths a real
 *   cluster uses (/.well-known/openid-configuration, /openid/v1/jwks), minting tokens shaped like
 *   projected service-account tokens (iss, sub system:serviceaccount:NS:NAME, aud, exp, iat, nbf,
 *   jti and the `kubernetes.io` claims);
 * - a projected volume written the way kubelet's atomic writer does it: the file is a symlink
 *   `token -> ..data/token`, `..data` a symlink to a timestamped directory, and a rotation writes a
 *   new directory and renames a new `..data` over the old one (one atomic step), then removes the
 *   old directory. A reader that keeps a descriptor keeps the old token; one that opens the path
 *   each time sees the new one.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, SignJWT, type JWK } from 'jose';

/** What a minted service-account token says. */
export interface ServiceAccountTokenOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The projected volume's `audience` (what the IdP expects). */
  readonly audience: string | readonly string[];
  /** The projected volume's `expirationSeconds`. Default 600 (Kubernetes' minimum). */
  readonly expiresInSec?: number;
  /** Issued-at, ms since the epoch. Default now. */
  readonly issuedAtMs?: number;
  /** Pod name in the `kubernetes.io` claims. Default `NAME-pod`. */
  readonly pod?: string;
}

/** One token the cluster issued (for tests to tell which one a request carried). */
export interface MintedToken {
  readonly jti: string;
  /** iat in seconds, as in the token. */
  readonly iat: number;
  readonly exp: number;
  readonly sub: string;
  readonly token: string;
}

/** A running test cluster issuer. */
export interface TestCluster {
  /** The issuer URL (http://127.0.0.1:PORT), the `iss` of every token. */
  readonly issuer: string;
  readonly jwksUri: string;
  /** Mints a service-account token. */
  mint(opts: ServiceAccountTokenOptions): Promise<MintedToken>;
  /** Every token minted so far, oldest first. */
  readonly minted: readonly MintedToken[];
  /** The public signing keys served at jwksUri. */
  publicJwks(): { keys: JWK[] };
  close(): Promise<void>;
}

/** Starts a cluster issuer on 127.0.0.1 with an OS-chosen port. */
export async function startTestCluster(): Promise<TestCluster> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID().slice(0, 8);
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const minted: MintedToken[] = [];

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (body: unknown): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (path === '/.well-known/openid-configuration') {
      // What `kubectl get --raw /.well-known/openid-configuration` shows on a real cluster.
      return send({
        issuer,
        jwks_uri: `${issuer}/openid/v1/jwks`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (path === '/openid/v1/jwks') return send({ keys: [publicJwk] });
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    issuer,
    jwksUri: `${issuer}/openid/v1/jwks`,
    minted,
    mint: (opts) => mintToken(privateKey, kid, issuer, opts).then((m) => (minted.push(m), m)),
    publicJwks: () => ({ keys: [publicJwk] }),
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

async function mintToken(key: KeyObject, kid: string, issuer: string, opts: ServiceAccountTokenOptions): Promise<MintedToken> {
  const iat = Math.floor((opts.issuedAtMs ?? Date.now()) / 1000);
  const exp = iat + (opts.expiresInSec ?? 600);
  const jti = randomUUID();
  const sub = `system:serviceaccount:${opts.namespace}:${opts.serviceAccount}`;
  const pod = opts.pod ?? `${opts.serviceAccount}-pod`;
  const token = await new SignJWT({
    'kubernetes.io': {
      namespace: opts.namespace,
      node: { name: 'node-1', uid: randomUUID() },
      pod: { name: pod, uid: randomUUID() },
      serviceaccount: { name: opts.serviceAccount, uid: randomUUID() },
    },
  })
    .setProtectedHeader({ alg: 'RS256', kid })
    .setIssuer(issuer)
    .setSubject(sub)
    .setAudience(typeof opts.audience === 'string' ? [opts.audience] : [...opts.audience])
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(key);
  return { jti, iat, exp, sub, token };
}

/**
 * A projected service-account token volume as kubelet lays it out (see the module comment).
 * `path` is what tokend is configured with.
 */
export class ProjectedVolume {
  /** The file path a container reads: DIR/FILE (a symlink through ..data). */
  readonly path: string;
  private generation = 0;

  constructor(
    readonly dir: string,
    private readonly file = 'token',
  ) {
    this.path = join(dir, file);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  }

  /** Writes (first time) or rotates (later) the token, the way kubelet does. */
  write(token: string): void {
    const stamp = `..${new Date().toISOString().replace(/[-:T.Z]/g, '_')}${++this.generation}`;
    const fresh = join(this.dir, stamp);
    mkdirSync(fresh, { mode: 0o755 });
    writeFileSync(join(fresh, this.file), token, { mode: 0o600 });
    let old: string | undefined;
    try {
      old = readlinkSync(join(this.dir, '..data'));
    } catch {
      old = undefined;
    }
    // The swap: a new ..data symlink renamed over the old one.
    symlinkSync(stamp, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (old === undefined) symlinkSync(join('..data', this.file), this.path);
    else rmSync(join(this.dir, old), { recursive: true, force: true });
  }
}
