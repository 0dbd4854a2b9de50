import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const http = require('node:http');
const fs = require('node:fs');
const mods = process.argv.slice(2);
for (const m of mods) { if (m === 'Response') void globalThis.Response; else await import(m); }
http.createServer(() => {}).listen(0);
setTimeout(() => {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(s.match(new RegExp(k + ':\\s+(\\d+)'))[1]) / 1024;
  const undici = process.moduleLoadList.some((m) => m.includes('undici'));
  console.log(`${(mods.join('+') || 'none').padEnd(30)} rss ${kb('VmRSS').toFixed(1)} anon ${kb('RssAnon').toFixed(1)} undici=${undici}`);
  process.exit();
}, 1500);
