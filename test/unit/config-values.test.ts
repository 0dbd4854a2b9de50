import { describe, expect, it } from 'vitest';
import { formatPath, parseFileMode, parseListen } from '../../src/config/schema.js';
import { isLoopbackHost } from '../../src/net.js';

describe('parseListen', () => {
  it.each([
    ['127.0.0.1:8477', { kind: 'tcp', host: '127.0.0.1', port: 8477 }],
    ['localhost:0', { kind: 'tcp', host: 'localhost', port: 0 }],
    ['[::1]:9000', { kind: 'tcp', host: '::1', port: 9000 }],
    ['0.0.0.0:80', { kind: 'tcp', host: '0.0.0.0', port: 80 }],
    ['tokend.svc.cluster.local:8477', { kind: 'tcp', host: 'tokend.svc.cluster.local', port: 8477 }],
    ['unix:/run/tokend/tokend.sock', { kind: 'unix', path: '/run/tokend/tokend.sock' }],
  ])('reads %s', (text, address) => {
    expect(parseListen(text)).toEqual(address);
  });

  it.each([
    '8477',
    ':8477',
    '127.0.0.1',
    '127.0.0.1:',
    '127.0.0.1:http',
    '::1:8477',
    '[127.0.0.1]:8477',
    '[::1]',
    'unix:',
    'unix:relative.sock',
    'host name:80',
    'http://127.0.0.1:8477',
  ])('refuses %j', (text) => {
    expect(() => parseListen(text)).toThrow('expected host:port, [ipv6]:port or unix:/absolute/path');
  });

  it('refuses ports above 65535', () => {
    expect(() => parseListen('127.0.0.1:65536')).toThrow('expected a port from 0 to 65535');
  });
});

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', '127.1.2.3', '127.255.255.255', '::1', '[::1]', '0:0:0:0:0:0:0:1', 'localhost', 'LOCALHOST', 'localhost.'])(
    '%s is loopback',
    (host) => {
      expect(isLoopbackHost(host)).toBe(true);
    },
  );

  it.each(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::2', 'localhost.example.com', 'mylocalhost', '', 'example.com', '[::ffff:10.0.0.1]'])(
    '%j is not loopback',
    (host) => {
      expect(isLoopbackHost(host)).toBe(false);
    },
  );
});

describe('parseFileMode', () => {
  it.each([
    ['0600', 0o600],
    ['600', 0o600],
    ['0640', 0o640],
    ['0o640', 0o640],
    [0o600, 0o600],
    [384, 0o600],
  ] as const)('reads %j as %o', (input, mode) => {
    expect(parseFileMode(input)).toBe(mode);
  });

  it.each(['0644', '0606', '0601', '0777', 0o644, 0o666])('refuses %j, which lets other users in', (input) => {
    expect(() => parseFileMode(input)).toThrow('must not give other users any access (use 0600 or 0640)');
  });

  it.each(['0660', '0620', '0610', '0670', 0o660])('refuses %j, which lets the group write or execute', (input) => {
    expect(() => parseFileMode(input)).toThrow('must not let the group write or execute (use 0600 or 0640)');
  });

  it.each(['0400', '0200', '0000', 0o440])('refuses %j, which does not let the owner read and write', (input) => {
    expect(() => parseFileMode(input)).toThrow('must let the owner read and write');
  });

  it.each(['rw-------', '0800', '0x180', '06000', '01600', '', '60', 'u=rw', 1.5, -1, 0o1600])(
    'refuses %j, which is not an octal permission mode',
    (input) => {
      expect(() => parseFileMode(input)).toThrow('expected an octal file mode like "0600" or "0640"');
    },
  );
});

describe('formatPath', () => {
  it('joins keys with dots and indices with brackets', () => {
    expect(formatPath(['verify', 'issuers', 0, 'introspection', 'clientId'])).toBe(
      'verify.issuers[0].introspection.clientId',
    );
    expect(formatPath(['tokens', 'orders', 'grant'])).toBe('tokens.orders.grant');
    expect(formatPath([])).toBe('config');
  });
});
