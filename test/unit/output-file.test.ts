import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OutputConfig } from '../../src/config/schema-output.js';
import type { TokenConfig } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import { checkOutputTarget, OutputFile, removeOwnTempFiles } from '../../src/output/file.js';
import { prepareOutputs } from '../../src/output/prepare.js';
import { tokenConfig } from '../support/token-config.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-output-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const tokenWith = (outputs: OutputConfig[]): TokenConfig => tokenConfig({ outputs });

async function problemsOf(tc: TokenConfig): Promise<readonly string[]> {
  try {
    await prepareOutputs(tc);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected prepareOutputs to refuse');
}

describe('OutputFile: written only when the bytes change', () => {
  it('writes with the configured mode whatever the umask, and leaves an identical file alone (same inode, same mtime)', async () => {
    const path = join(dir, 'orders.header');
    const f = new OutputFile(path, 0o640);
    const old = process.umask(0o077);
    try {
      expect(await f.write('Authorization: Bearer a\n')).toBe('written');
    } finally {
      process.umask(old);
    }
    const st = statSync(path);
    expect(st.mode & 0o777).toBe(0o640);
    for (let i = 0; i < 3; i++) expect(await f.write('Authorization: Bearer a\n')).toBe('unchanged');
    const again = statSync(path);
    expect([again.ino, again.mtimeMs]).toEqual([st.ino, st.mtimeMs]);
    expect(await f.write('Authorization: Bearer b\n')).toBe('written');
    expect(statSync(path).ino).not.toBe(st.ino);
    expect(readFileSync(path, 'utf8')).toBe('Authorization: Bearer b\n');
  });

  it('after a restart, compares with what is on disk: same bytes and mode are kept, another mode is rewritten', async () => {
    const path = join(dir, 'orders');
    writeFileSync(path, 'tok-1', { mode: 0o600 });
    chmodSync(path, 0o600);
    const ino = statSync(path).ino;
    expect(await new OutputFile(path, 0o600).write('tok-1')).toBe('unchanged');
    expect(statSync(path).ino).toBe(ino);
    // The operator changed the mode in the config: same content, but the file must follow.
    expect(await new OutputFile(path, 0o640).write('tok-1')).toBe('written');
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(await new OutputFile(path, 0o640).write('tok-2')).toBe('written');
  });

  it('removes only its own crash leftovers from the directory', async () => {
    const path = join(dir, 'orders.env');
    const own = '.orders.env.0123456789abcdef.tmp';
    const others = ['.billing.0123456789abcdef.tmp', '.orders.env.tmp', 'app.conf', '.orders.env.0123456789abcdef.tmp.bak'];
    for (const n of [own, ...others]) writeFileSync(join(dir, n), 'x');
    await removeOwnTempFiles(path);
    expect(readdirSync(dir).sort()).toEqual(others.sort());
  });
});

describe('start-up checks of an output\'s directory and path', () => {
  it('names the directory that does not exist, is not a directory, or is world-writable without the sticky bit', async () => {
    writeFileSync(join(dir, 'file'), 'x');
    mkdirSync(join(dir, 'open'));
    chmodSync(join(dir, 'open'), 0o777);
    expect(await checkOutputTarget(join(dir, 'missing', 'orders'))).toBe(`directory ${join(dir, 'missing')} does not exist`);
    expect(await checkOutputTarget(join(dir, 'file', 'orders'))).toBe(`${join(dir, 'file')} is not a directory`);
    expect(await checkOutputTarget(join(dir, 'open', 'orders'))).toMatch(/world-writable without the sticky bit/);
    // /tmp-style: world-writable but sticky, so nobody else can replace tokend's file.
    mkdirSync(join(dir, 'sticky'));
    chmodSync(join(dir, 'sticky'), 0o1777);
    expect(await checkOutputTarget(join(dir, 'sticky', 'orders'))).toBeUndefined();
    expect(await checkOutputTarget(join(dir, 'orders'))).toBeUndefined();
  });

  it('refuses a path that is a directory or a symbolic link', async () => {
    mkdirSync(join(dir, 'adir'));
    symlinkSync('/etc/passwd', join(dir, 'link'));
    expect(await checkOutputTarget(join(dir, 'adir'))).toBe(`${join(dir, 'adir')} is a directory`);
    expect(await checkOutputTarget(join(dir, 'link'))).toMatch(/is a symbolic link/);
  });

  it('prepareOutputs reports every problem with its config path, template files included', async () => {
    writeFileSync(join(dir, 'bad.tmpl'), 'x={{access_token}} y={{refresh_token}}');
    writeFileSync(join(dir, 'good.tmpl'), 'Bearer {{ access_token }}');
    const problems = await problemsOf(
      tokenWith([
        { path: join(dir, 'nope', 'a'), format: 'raw', mode: 0o600 },
        { path: join(dir, 'b'), format: 'template', mode: 0o600, template: { kind: 'file', path: join(dir, 'bad.tmpl') } },
        { path: join(dir, 'c'), format: 'template', mode: 0o600, template: { kind: 'file', path: join(dir, 'absent.tmpl') } },
        { path: join(dir, 'd'), format: 'template', mode: 0o600, template: { kind: 'file', path: join(dir, 'good.tmpl') } },
      ]),
    );
    expect(problems).toEqual([
      `tokens.orders.outputs[0].path: directory ${join(dir, 'nope')} does not exist`,
      expect.stringMatching(/^tokens\.orders\.outputs\[1\]\.templateFile: unknown placeholder \{\{refresh_token\}\} on line 1/),
      `tokens.orders.outputs[2].templateFile: template file ${join(dir, 'absent.tmpl')} does not exist`,
    ]);
    const ok = await prepareOutputs(tokenWith([{ path: join(dir, 'd'), format: 'template', mode: 0o600, template: { kind: 'file', path: join(dir, 'good.tmpl') } }]));
    expect(ok.map((o) => o.field)).toEqual(['tokens.orders.outputs[0]']);
    // Preparing writes nothing (tokend check may call it).
    expect(readdirSync(dir).sort()).toEqual(['bad.tmpl', 'good.tmpl']);
  });
});
