#!/usr/bin/env node
/**
 * Install step of the optional native kernels (an N-API addon over oneDNN, see native/src): built
 * with npm's own node-gyp where this machine has g++ and Debian's oneDNN (libdnnl-dev); otherwise,
 * or if the build fails, a one-line note and a clean exit: Eden then runs on its wasm kernels.
 * npm 11 runs a dependency's install step only once the project approves it, in its package.json
 * ("allowScripts": { "eden-anatomy": true }) or afterwards with
 *   npm install-scripts approve eden-anatomy && npm rebuild eden-anatomy
 * (a global install takes --allow-scripts=eden-anatomy instead).
 * EDEN_SKIP_NATIVE=1 skips the build.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const note = (message) => process.stdout.write(`eden: ${message}\n`);

if (process.env.EDEN_SKIP_NATIVE === '1') {
  note('native kernels not built (EDEN_SKIP_NATIVE=1)');
  process.exit(0);
}
const header = ['/usr/include/oneapi/dnnl/dnnl.hpp', '/usr/local/include/oneapi/dnnl/dnnl.hpp'].find((f) => existsSync(f));
const compiler = spawnSync('g++', ['--version'], { stdio: 'ignore' }).status === 0;
if (!header || !compiler) {
  note(`native kernels not built (needs ${[!compiler && 'g++', !header && "oneDNN's headers"].filter(Boolean).join(' and ')}: apt-get install g++ make libdnnl-dev, then npm rebuild eden-anatomy); Eden runs on its wasm kernels`);
  process.exit(0);
}
// npm gives its bundled node-gyp to install scripts; `npm run build:native` has it on the PATH.
const gyp = process.env.npm_config_node_gyp;
const r = gyp ? spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: here, stdio: 'inherit' }) : spawnSync('node-gyp', ['rebuild'], { cwd: here, stdio: 'inherit', shell: process.platform === 'win32' });
if (r.status !== 0) {
  note('native kernels failed to build (see above); Eden runs on its wasm kernels');
  process.exit(0);
}
note('native kernels built (oneDNN)');
