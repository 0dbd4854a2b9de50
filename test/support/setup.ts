// Every test process runs with the Headers and Response the CLI installs (src/cli.ts), so
// in-process daemons meet IdPs through the same classes as the built one.
import { installFetchClasses } from '../../src/util/fetch-classes.js';

installFetchClasses();
