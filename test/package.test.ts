/**
 * Eden as a user installs it: `npm pack`, then the tarball installed into a new project whose
 * package.json approves its install step (npm 11's allowScripts; older npm runs it unasked). The native kernels must be built by that install step where
 * g++ and libdnnl-dev exist, and be active when the package is used; the `eden` command runs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { skipOrFail } from './helpers/tools.js';

const root = path.join(import.meta.dirname, '..');

describe('the npm package', () => {
  it('installs from a packed tarball, builds its native kernels in the install step, and runs', async (t) => {
    if (!existsSync(path.join(root, 'dist', 'index.js'))) return t.skip("dist/ is not built: run 'npm run build'");
    const work = mkdtempSync(path.join(tmpdir(), 'eden-pack-'));
    execFileSync('npm', ['pack', '--pack-destination', work, '--silent'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, npm_config_ignore_scripts: 'true' } });
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
    const project = path.join(work, 'project');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'uses-eden', version: '1.0.0', private: true, type: 'module', allowScripts: { 'eden-anatomy': true } }));
    const install = spawnSync('npm', ['install', path.join(work, tarball), '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: project, encoding: 'utf8' });
    assert.equal(install.status, 0, `${install.stdout}\n${install.stderr}`);
    const addon = path.join(project, 'node_modules', 'eden-anatomy', 'native', 'build', 'Release', 'eden_native.node');
    const hasDnnl = existsSync('/usr/include/oneapi/dnnl/dnnl.hpp');
    if (hasDnnl) {
      assert.match(install.stdout, /eden: native kernels built \(oneDNN\)/);
      assert.ok(existsSync(addon), 'the install step did not build the addon');
    } else {
      assert.match(install.stdout, /eden: native kernels not built \(needs .*libdnnl-dev/);
    }
    const use = spawnSync(process.execPath, ['--input-type=module', '-e', "import { useBackend, nativeStatus } from 'eden-anatomy'; await useBackend('wasm'); console.log(JSON.stringify(nativeStatus())); process.exit(0);"], { cwd: project, encoding: 'utf8' });
    assert.equal(use.status, 0, use.stderr);
    const status = JSON.parse(use.stdout.trim().split('\n').pop()!) as { active: boolean; detail: string };
    if (hasDnnl) assert.equal(status.active, true, status.detail);
    else skipOrFail(t, 'native', `libdnnl-dev is not installed: the package runs on wasm (${status.detail})`);
    const cli = spawnSync(path.join(project, 'node_modules', '.bin', 'eden'), ['--version'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^\d+\.\d+\.\d+/);
  });
});
