import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderOutput, tokenValues, type Renderer } from '../../src/output/render.js';
import { parseTemplate, PLACEHOLDERS, renderTemplate } from '../../src/output/template.js';
import { GOLDEN_TOKEN } from './output-support.js';

const GOLDEN = join(import.meta.dirname, '../golden/outputs');

/**
 * The file in test/golden/outputs, compared byte for byte. `UPDATE_GOLDEN=1` rewrites it (then
 * review the diff: a golden file is what operators' tools read).
 */
function expectGolden(file: string, actual: string): void {
  const path = join(GOLDEN, file);
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(path, actual);
  expect(existsSync(path), `golden file ${file} (create it with UPDATE_GOLDEN=1)`).toBe(true);
  expect(actual).toBe(readFileSync(path, 'utf8'));
}

function render(renderer: Renderer, token = GOLDEN_TOKEN): string {
  const r = renderOutput(renderer, 'orders', token);
  if (!r.ok) throw new Error(`refused: ${r.reason}`);
  return r.data;
}

function template(text: string): Renderer {
  const p = parseTemplate(text);
  if (!p.ok) throw new Error(p.problems.join('; '));
  return { format: 'template', template: p.template };
}

describe('output formats, against golden files', () => {
  it('raw: the access token alone, without a newline (like the file store\'s DIR/NAME)', () => {
    const out = render({ format: 'raw' });
    expectGolden('orders.raw', out);
    expect(out).toBe(GOLDEN_TOKEN.accessToken);
  });

  it('json: the file store\'s NAME.json fields in Unix seconds, scope when known, never the internal grant key', () => {
    const out = render({ format: 'json' });
    expectGolden('orders.json', out);
    expect(JSON.parse(out)).toEqual({
      access_token: GOLDEN_TOKEN.accessToken,
      token_type: 'Bearer',
      expires_at: 1735689900,
      obtained_at: 1735689600,
      scope: 'orders:read orders:write',
    });
    expect(out).not.toContain('grant');
    const noScope = JSON.parse(render({ format: 'json' }, { ...GOLDEN_TOKEN, scope: undefined })) as Record<string, unknown>;
    expect('scope' in noScope).toBe(false);
  });

  it('header: one "Authorization: <token_type> <token>" line for curl -H @file', () => {
    const out = render({ format: 'header' });
    expectGolden('orders.header', out);
    expect(out).toBe(`Authorization: Bearer ${GOLDEN_TOKEN.accessToken}\n`);
    expect(render({ format: 'header' }, { ...GOLDEN_TOKEN, tokenType: 'DPoP' })).toMatch(/^Authorization: DPoP /);
  });

  it('env: VAR, VAR_TYPE and VAR_EXPIRES_AT lines, unquoted, with the configured variable name', () => {
    const out = render({ format: 'env', variable: 'ORDERS_TOKEN' });
    expectGolden('orders.env', out);
    expect(out).toBe(`ORDERS_TOKEN=${GOLDEN_TOKEN.accessToken}\nORDERS_TOKEN_TYPE=Bearer\nORDERS_TOKEN_EXPIRES_AT=1735689900\n`);
  });

  it('template: every placeholder filled in, the rest of the text kept byte for byte', () => {
    const out = render(template(readFileSync(join(GOLDEN, 'orders.tmpl'), 'utf8')));
    expectGolden('orders.template.out', out);
    expect(out).toContain(`AUTH="Bearer ${GOLDEN_TOKEN.accessToken}"`);
    expect(out).toContain('EXPIRES_AT=1735689900 # 2025-01-01T00:05:00Z');
    expect(out).toContain('LIFETIME=300');
  });
});

describe('values that a format cannot hold are refused, not mangled', () => {
  it('env refuses a token with characters outside RFC 6750 b64token (it would need quoting)', () => {
    for (const accessToken of ['a b', 'a"b', "a'b", 'a$b', 'a`b', 'a;b', 'a\\b', '~abc', 'a=b', 'ä']) {
      const r = renderOutput({ format: 'env', variable: 'TOKEN' }, 'orders', { ...GOLDEN_TOKEN, accessToken });
      expect(r.ok, accessToken).toBe(false);
      if (!r.ok) expect(r.reason).not.toContain(accessToken);
    }
    // Everything b64token allows is written bare: base64, base64url, JWTs, trailing padding, an inner ~.
    for (const accessToken of ['abc+/=', 'a-b_c.d~e', 'QUJD==']) {
      expect(renderOutput({ format: 'env', variable: 'TOKEN' }, 'orders', { ...GOLDEN_TOKEN, accessToken }).ok, accessToken).toBe(true);
    }
  });

  it('header refuses a token that is not printable ASCII, and a token type that is not an HTTP auth scheme', () => {
    expect(renderOutput({ format: 'header' }, 'orders', { ...GOLDEN_TOKEN, accessToken: 'tökén' }).ok).toBe(false);
    expect(renderOutput({ format: 'header' }, 'orders', { ...GOLDEN_TOKEN, tokenType: 'Bea rer' }).ok).toBe(false);
  });
});

describe('template language', () => {
  it('reports every unknown, malformed or unterminated placeholder with its line, and nothing else of the text', () => {
    const p = parseTemplate('ok {{access_token}}\n{{ acces_token }} {{password}}\n{{ 1+1 }}\nsecret-ish {{name');
    expect(p.ok).toBe(false);
    if (p.ok) return;
    expect(p.problems).toEqual([
      expect.stringMatching(/^unknown placeholder \{\{acces_token\}\} on line 2 \(known: access_token, /),
      expect.stringMatching(/^unknown placeholder \{\{password\}\} on line 2 /),
      'malformed placeholder on line 3 (expected {{name}})',
      'unterminated {{ on line 4',
    ]);
    expect(p.problems.join('\n')).not.toContain('secret-ish');
  });

  it('has no code execution: expressions, filters and calls are malformed placeholders', () => {
    for (const t of ['{{ access_token | upper }}', '{{ process.env.HOME }}', '{{ constructor("x")() }}', '{{ }}']) {
      expect(parseTemplate(t).ok, t).toBe(false);
    }
  });

  it('expires_in is the lifetime as granted (a countdown would make an unchanged token render new bytes)', () => {
    const v = tokenValues('orders', GOLDEN_TOKEN);
    expect(v.expires_in).toBe('300');
    expect(Object.keys(v).sort()).toEqual([...PLACEHOLDERS].sort());
    const p = parseTemplate('{{expires_in}}');
    expect(p.ok && renderTemplate(p.template, v)).toBe('300');
  });

  it('refuses an empty template', () => {
    expect(parseTemplate('')).toEqual({ ok: false, problems: ['must not be empty'] });
  });
});
