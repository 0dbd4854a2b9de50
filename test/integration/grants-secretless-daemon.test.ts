/**
 * The built CLI (`tokend run`) with no secret anywhere: every credential is the test cluster's
 * service-account token in a projected volume that the test rotates the way kubelet does, against
 * the federating IdP. Three tokens: a client_credentials token with the cluster token as client
 * assertion, a JWT bearer token, and a token exchange of tokend's own first token for a narrower
 * audience. Token lifetimes are 4 s, so refreshes happen within the test.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProjectedVolume, startTestCluster, type TestCluster } from '../../dev/cluster.js';
import { ensureBuiltCli, freePort, getToken, runCli, scratch, TokendProcess, until } from '../support/daemon.js';
import { JWT_BEARER, startFederatingIdp, TOKEN_EXCHANGE, type FederatingIdp } from '../support/federating-idp.js';

const NS = 'shop';
const SA = `system:serviceaccount:${NS}:orders`;

let cluster: TestCluster;
let idp: FederatingIdp;
let work: ReturnType<typeof scratch>;
let proc: TokendProcess | undefined;
let runs = 0;

beforeAll(async () => {
  expect(ensureBuiltCli(), 'dist/cli.js (npm run build)').toBe(true);
  work = scratch('tokend-secretless-');
  cluster = await startTestCluster();
  idp = await startFederatingIdp({
    trust: [cluster.issuer],
    allowAnonymous: true,
    accessTokenLifetimeSec: 4,
    clients: [
      { clientId: 'orders', federated: [{ issuer: cluster.issuer, subject: SA }] },
      { clientId: 'exchanger', public: true, grants: [TOKEN_EXCHANGE], exchangeAudiences: ['orders-api'] },
    ],
  });
});

afterEach(async () => {
  await proc?.kill9();
  proc = undefined;
});

afterAll(async () => {
  await idp?.close();
  await cluster?.close();
  work?.cleanup();
});

/** A projected volume with a fresh token, a config naming it for three tokens, and tokend running it. */
async function start(): Promise<{ vol: ProjectedVolume; url: string; tokensDir: string; configText: string; p: TokendProcess }> {
  const n = ++runs;
  const vol = new ProjectedVolume(join(work.dir, `sa-${n}`));
  vol.write((await mint()).token);
  const port = await freePort();
  const tokensDir = join(work.dir, `tokens-${n}`);
  const common = `    tokenEndpoint: ${idp.tokenEndpoint}\n    timeout: 2s\n`;
  const configText = `listen: 127.0.0.1:${port}
reconcile: "*/1 * * * * *"
store:
  type: file
  dir: ${tokensDir}
tokens:
  orders:
${common}    clientId: orders
    clientAuth: client_assertion
    clientAssertionFile: ${vol.path}
    grant: client_credentials
  narrow:
${common}    clientId: exchanger
    clientAuth: none
    grant: token_exchange
    subjectToken: orders
    audience: orders-api
  batch:
${common}    clientAuth: none
    grant: jwt_bearer
    assertionFile: ${vol.path}
`;
  const path = work.file(`tokend-${n}.yaml`, configText);
  // Nothing secret in the environment either: only what a pod would have.
  const p = new TokendProcess(['run', '--config', path], { TOKEND_CONFIG: '' });
  proc = p;
  return { vol, url: `http://127.0.0.1:${port}`, tokensDir, configText, p };
}

function mint(opts: { issuedAtMs?: number; expiresInSec?: number; audience?: string } = {}) {
  return cluster.mint({ namespace: NS, serviceAccount: 'orders', audience: opts.audience ?? idp.tokenEndpoint, ...opts });
}

/** The IdP's requests (from index `from`) of one grant type whose federated token in `param` has this jti. */
function carrying(from: number, param: string, jti: string) {
  return idp.requests.slice(from).filter((r) => r.presented.some((p) => p.param === param && p.jti === jti));
}

describe('tokend run with no secret anywhere (projected service-account token only)', () => {
  it('obtains and refreshes all three tokens; after a kubelet rotation the next grants carry the new token; nothing secret is ever printed', async () => {
    const { vol, url, tokensDir, configText, p } = await start();
    expect(configText).not.toMatch(/clientSecret|privateKey|refreshToken|password/i);
    const from = idp.requests.length;
    for (const token of ['orders', 'narrow', 'batch']) await p.waitForEvent('token.refreshed', { token, timeoutMs: 20_000 });

    // kubelet rotates: a new timestamped directory, ..data swapped.
    const next = await mint();
    vol.write(next.token);
    for (const param of ['client_assertion', 'assertion']) {
      await until(() => carrying(from, param, next.jti).some((r) => r.outcome === 'issued'), `a grant carrying the rotated token as ${param}`, 20_000);
    }

    // The narrow token is tokend's own orders token exchanged for orders-api, re-exchanged with the
    // then-current orders token before it expired: never an expired subject, never a lapse.
    await p.waitForEvent('token.refreshed', { token: 'narrow', nth: 3, timeoutMs: 20_000 });
    const exchanges = idp.requests.slice(from).filter((r) => r.grantType === TOKEN_EXCHANGE);
    const ordersTokens = new Set(idp.requests.filter((r) => r.clientId === 'orders' && r.accessToken).map((r) => r.accessToken));
    expect(exchanges.length).toBeGreaterThanOrEqual(3);
    for (const r of exchanges) {
      expect(ordersTokens.has(r.body.subject_token)).toBe(true);
      expect((decodeJwt(r.body.subject_token!).exp as number) * 1000).toBeGreaterThan(r.at);
      expect(r.issued).toMatchObject({ aud: 'orders-api', sub: SA });
    }
    expect(new Set(exchanges.map((r) => r.body.subject_token)).size).toBeGreaterThanOrEqual(2);
    expect(p.events('token.expired', 'narrow')).toEqual([]);
    expect(idp.requests.slice(from).filter((r) => r.grantType === JWT_BEARER).every((r) => r.clientId === undefined)).toBe(true);

    // issued_token_type in the store's metadata and in the endpoint's answer.
    expect(JSON.parse(readFileSync(join(tokensDir, 'narrow.json'), 'utf8'))).toMatchObject({ issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' });
    const narrow = await getToken(url, 'narrow');
    expect(narrow.status).toBe(200);
    expect(narrow.json().issued_token_type).toBe('urn:ietf:params:oauth:token-type:access_token');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/tokend_client_assertion_expiry_seconds\{token="orders"\} [1-9]\d*/);
    expect(metrics).toMatch(/tokend_federated_token_expiry_seconds\{token="batch",kind="assertion"\} [1-9]\d*/);
    expect(metrics).toMatch(/tokend_federated_token_expiry_seconds\{token="narrow",kind="subject_token"\} \d+/);
    expect((await p.stop()).code).toBe(0);

    // Secrecy: no cluster token and no access token in any log line, error or metric.
    const secrets = [...cluster.minted.map((m) => m.token), ...idp.requests.flatMap((r) => (r.accessToken ? [r.accessToken] : []))];
    expect(secrets.length).toBeGreaterThan(10);
    const everything = p.output + metrics;
    expect(p.lines.length).toBeGreaterThan(10);
    for (const s of secrets) {
      expect(everything.includes(s.slice(0, 24)), 'a token prefix appeared in the output').toBe(false);
      expect(everything.includes(s.split('.')[2]!.slice(0, 24)), 'a token signature appeared in the output').toBe(false);
    }
  });

  it('an expired file is never sent: client_assertion_expired and assertion_expired, no request carrying it, and recovery when kubelet writes a fresh one', async () => {
    const { vol, url, p } = await start();
    for (const token of ['orders', 'batch']) await p.waitForEvent('token.acquired', { token, timeoutMs: 20_000 });
    const expired = await mint({ issuedAtMs: Date.now() - 700_000, expiresInSec: 600 });
    vol.write(expired.token);
    const failedLine = (token: string, reason: string) => (l: { event?: string; token?: string; error?: unknown }) =>
      l.event === 'token.refresh_failed' && l.token === token && (l.error as { reason?: string } | undefined)?.reason === reason;
    const orders = await p.waitFor(failedLine('orders', 'client_assertion_expired'), 20_000, 'client_assertion_expired');
    await p.waitFor(failedLine('batch', 'assertion_expired'), 20_000, 'assertion_expired');
    expect(String((orders.error as { message: string }).message)).toContain(`the client assertion from ${vol.path} expired`);
    expect(orders.retry_in_ms).toBeGreaterThan(0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('tokend_client_assertion_expiry_seconds{token="orders"} 0');

    const fresh = await mint();
    vol.write(fresh.token);
    await until(() => carrying(0, 'client_assertion', fresh.jti).some((r) => r.outcome === 'issued'), 'orders recovered with the fresh token', 20_000);
    await until(() => carrying(0, 'assertion', fresh.jti).some((r) => r.outcome === 'issued'), 'batch recovered with the fresh token', 20_000);
    await until(async () => (await getToken(url, 'orders')).status === 200, 'orders served again');
    expect(carrying(0, 'client_assertion', expired.jti)).toEqual([]);
    expect(carrying(0, 'assertion', expired.jti)).toEqual([]);
  });

  it('a wrong audience is a permanent failure naming what was sent; the next file kubelet writes is tried at once', async () => {
    const n = idp.requests.length;
    const { vol, url, p } = await start();
    await p.waitForEvent('token.acquired', { token: 'orders', timeoutMs: 20_000 });
    const wrong = await mint({ audience: 'https://not-this-idp.example' });
    vol.write(wrong.token);
    const refused = await p.waitFor((l) => l.event === 'token.refresh_failed' && l.token === 'orders' && l.permanent === true, 20_000, 'permanent failure');
    expect(refused.error).toMatchObject({ code: 'GRANT_PERMANENT', oauth_error: 'invalid_client' });
    expect(String((refused.error as { message: string }).message)).toContain(`sub ${SA}, aud https://not-this-idp.example`);
    expect(carrying(n, 'client_assertion', wrong.jti).length).toBeGreaterThan(0);
    expect(carrying(n, 'client_assertion', wrong.jti).every((r) => r.outcome === 'invalid_client')).toBe(true);

    const right = await mint();
    vol.write(right.token);
    await until(() => carrying(n, 'client_assertion', right.jti).some((r) => r.outcome === 'issued'), 'orders retried with the new file', 20_000);
    let readyz = '';
    await until(async () => {
      const res = await fetch(`${url}/readyz`);
      readyz = await res.text();
      return res.status === 200;
    }, 'ready again', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${readyz}\n${p.lines.filter((l) => l.event === 'token.refresh_failed').slice(-6).map((l) => JSON.stringify(l)).join('\n')}`);
    });
  });

  it('tokend check and run refuse to start when the projected token is not mounted, naming the setting and the path', async () => {
    const missing = join(work.dir, 'not-mounted', 'token');
    const path = work.file(
      'missing.yaml',
      `tokens:\n  orders:\n    tokenEndpoint: ${idp.tokenEndpoint}\n    clientId: orders\n    clientAuth: client_assertion\n    clientAssertionFile: ${missing}\n    grant: client_credentials\n`,
    );
    for (const cmd of ['check', 'run']) {
      const r = await runCli([cmd, '--config', path]);
      expect(r.code, cmd).toBe(2);
      expect(r.stderr, cmd).toContain(`tokens.orders.clientAssertionFile: secret file ${missing} does not exist`);
    }
  });
});
