// Preloaded with `node --import` into a tokend child process: on exit, writes the node modules the
// process loaded (process.moduleLoadList) to the file named by TOKEND_TEST_MODULE_REPORT.
import { writeFileSync } from 'node:fs';

const out = process.env.TOKEND_TEST_MODULE_REPORT;
if (out) process.on('exit', () => writeFileSync(out, JSON.stringify(process.moduleLoadList)));
