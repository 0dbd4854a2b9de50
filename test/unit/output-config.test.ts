import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { problemsOf } from '../support/config-problems.js';

const TOKEN = {
  issuer: 'https://idp.example.com/realms/prod',
  clientId: 'orders-client',
  clientSecretFile: '/secrets/orders/client-secret',
  grant: 'client_credentials',
};

/** A document with token `orders` (plus `extra` keys) and optionally other tokens and a store. */
function doc(extra: Record<string, unknown>, top: Record<string, unknown> = {}, others: Record<string, unknown> = {}): string {
  return stringify({ ...top, tokens: { orders: { ...TOKEN, ...extra }, ...others } });
}

function parse(text: string): Config {
  return parseConfig(text, { env: {} });
}

describe('tokens.NAME.outputs', () => {
  it('resolves each entry with defaults: mode 0600, env variable TOKEN, inline or file templates', () => {
    const c = parse(
      doc({
        outputs: [
          { path: '/run/app/orders.header', format: 'header' },
          { path: '/run/app/orders.env', format: 'env' },
          { path: '/run/app/orders2.env', format: 'env', variable: 'ORDERS', mode: '0640' },
          { path: '/run/app/orders.conf', format: 'template', template: 'token={{access_token}}' },
          { path: '/run/app/orders.yaml', format: 'template', templateFile: '/etc/tokend/orders.tmpl' },
        ],
      }),
    );
    expect(c.tokens[0]?.outputs).toEqual([
      { path: '/run/app/orders.header', format: 'header', mode: 0o600, variable: undefined, template: undefined },
      { path: '/run/app/orders.env', format: 'env', mode: 0o600, variable: 'TOKEN', template: undefined },
      { path: '/run/app/orders2.env', format: 'env', mode: 0o640, variable: 'ORDERS', template: undefined },
      { path: '/run/app/orders.conf', format: 'template', mode: 0o600, variable: undefined, template: { kind: 'inline', text: 'token={{access_token}}' } },
      { path: '/run/app/orders.yaml', format: 'template', mode: 0o600, variable: undefined, template: { kind: 'file', path: '/etc/tokend/orders.tmpl' } },
    ]);
  });

  it('reports an unknown placeholder at tokens.NAME.outputs[i].template', () => {
    const problems = problemsOf(doc({ outputs: [{ path: '/run/a', format: 'raw' }, { path: '/run/b', format: 'template', template: 'x={{acess_token}}' }] }));
    expect(problems).toEqual([expect.stringMatching(/^tokens\.orders\.outputs\[1\]\.template: unknown placeholder \{\{acess_token\}\} on line 1/)]);
  });

  it('refuses modes that let the group write or others read, the same rule as the file store', () => {
    for (const mode of ['0644', '0660', '0666', '0700', '0400', '0750', 'rw']) {
      const problems = problemsOf(doc({ outputs: [{ path: '/run/a', format: 'raw', mode }] }));
      expect(problems, mode).toEqual([expect.stringMatching(/^tokens\.orders\.outputs\[0\]\.mode: /)]);
    }
  });

  it('refuses relative paths, directories and unknown formats, naming each entry', () => {
    const problems = problemsOf(
      doc({
        outputs: [
          { path: 'orders.header', format: 'header' },
          { path: '/run/app/', format: 'raw' },
          { path: '/run/app/x', format: 'yaml' },
        ],
      }),
    );
    expect(problems).toEqual([
      'tokens.orders.outputs[0].path: expected an absolute file path',
      'tokens.orders.outputs[1].path: expected a file path, not a directory',
      expect.stringMatching(/^tokens\.orders\.outputs\[2\]\.format: expected one of raw, json, header, env, template/),
    ]);
  });

  it('requires exactly one of template and templateFile for format template, and neither elsewhere', () => {
    expect(problemsOf(doc({ outputs: [{ path: '/run/a', format: 'template' }] }))).toEqual([
      'tokens.orders.outputs[0]: template or templateFile is required for format template',
    ]);
    expect(problemsOf(doc({ outputs: [{ path: '/run/a', format: 'template', template: '{{name}}', templateFile: '/t' }] }))).toEqual([
      'tokens.orders.outputs[0].templateFile: give template or templateFile, not both',
    ]);
    expect(problemsOf(doc({ outputs: [{ path: '/run/a', format: 'raw', template: '{{name}}', variable: 'X' }] }))).toEqual([
      'tokens.orders.outputs[0].template: only used with format template',
      'tokens.orders.outputs[0].variable: only used with format env',
    ]);
    expect(problemsOf(doc({ outputs: [{ path: '/run/a', format: 'env', variable: 'MY-TOKEN' }] }))).toEqual([
      expect.stringMatching(/^tokens\.orders\.outputs\[0\]\.variable: expected a variable name/),
    ]);
  });

  it('refuses two outputs on one file, and outputs that would replace the file store\'s own files', () => {
    const problems = problemsOf(
      doc(
        { outputs: [{ path: '/run/app/shared', format: 'raw' }, { path: '/var/run/tokend/billing.json', format: 'json' }, { path: '/var/run/tokend/.state/x', format: 'raw' }] },
        { store: { type: 'file', dir: '/var/run/tokend' } },
        { billing: { ...TOKEN, outputs: [{ path: '/run/app/../app/shared', format: 'header' }] } },
      ),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^tokens\.orders\.outputs\[1\]\.path: is one of the file store's own files/),
      expect.stringMatching(/^tokens\.orders\.outputs\[2\]\.path: is inside the file store's state directory/),
      'tokens.billing.outputs[0].path: same file as tokens.orders.outputs[0]: two outputs would overwrite each other',
    ]);
    // Beside the store's files is fine: that is where a header file usually goes.
    expect(parse(doc({ outputs: [{ path: '/var/run/tokend/orders.header', format: 'header' }] }, { store: { type: 'file', dir: '/var/run/tokend' } })).tokens[0]?.outputs).toHaveLength(1);
  });
});

describe('tokens.NAME.notify', () => {
  it('resolves http, signal and exec (list or object form) with their default timeouts', () => {
    const c = parse(
      doc({
        notify: {
          http: { url: 'http://127.0.0.1:8080/-/reload' },
          signal: { name: 'SIGHUP', pidFile: '/run/app/app.pid' },
          exec: ['/usr/bin/reload', '--quiet', 'a;b'],
        },
      }),
    );
    expect(c.tokens[0]?.notify).toEqual({
      http: { url: 'http://127.0.0.1:8080/-/reload', timeoutMs: 5_000 },
      signal: { signal: 'SIGHUP', pidFile: '/run/app/app.pid' },
      exec: { command: ['/usr/bin/reload', '--quiet', 'a;b'], timeoutMs: 10_000 },
    });
    const d = parse(doc({ notify: { http: { url: 'https://[::1]:9443/hook', timeout: '2s' }, exec: { command: ['reload'], timeout: '30s' } } }));
    expect(d.tokens[0]?.notify?.http).toEqual({ url: 'https://[::1]:9443/hook', timeoutMs: 2_000 });
    expect(d.tokens[0]?.notify?.exec).toEqual({ command: ['reload'], timeoutMs: 30_000 });
  });

  it('refuses a URL that is not loopback: a notification never leaves the machine', () => {
    for (const url of ['http://10.0.0.5:8080/reload', 'https://app.example.com/reload', 'http://0.0.0.0:8080/', 'http://[::]:80/']) {
      expect(problemsOf(doc({ notify: { http: { url } } })), url).toEqual([
        expect.stringMatching(/^tokens\.orders\.notify\.http\.url: must be a loopback URL/),
      ]);
    }
    expect(problemsOf(doc({ notify: { http: { url: 'http://user:pw@127.0.0.1/' } } }))).toEqual([
      'tokens.orders.notify.http.url: must not contain credentials',
    ]);
  });

  it('refuses SIGKILL, SIGSTOP and unknown signals, an empty command, an empty notify section', () => {
    expect(problemsOf(doc({ notify: { signal: { name: 'SIGKILL', pidFile: '/run/p' } } }))).toEqual([
      expect.stringMatching(/^tokens\.orders\.notify\.signal\.name: expected one of SIGHUP, /),
    ]);
    expect(problemsOf(doc({ notify: { exec: [] } }))).toEqual([
      'tokens.orders.notify.exec.command: expected the program and its arguments: [cmd, arg, ...]',
    ]);
    expect(problemsOf(doc({ notify: { exec: ['reload', ''] } }))).toEqual(['tokens.orders.notify.exec.command[1]: must not be empty']);
    expect(problemsOf(doc({ notify: {} }))).toEqual(['tokens.orders.notify: expected at least one of http, signal, exec']);
    expect(problemsOf(doc({ notify: { webhook: {} } }))).toContain('tokens.orders.notify.webhook: unknown key');
  });
});
