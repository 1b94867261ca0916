/**
 * The suite's own environment (test/setup.ts): a test process's temporary files are gone when it
 * exits, unless EDEN_KEEP_TEST_FILES asks to keep them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const setup = path.join(import.meta.dirname, 'setup.ts');
// Writes a file in a mkdtemp folder, as the tests do, and prints where.
const writer = "import { mkdtempSync, writeFileSync } from 'node:fs'; import { tmpdir } from 'node:os'; import path from 'node:path'; const dir = mkdtempSync(path.join(tmpdir(), 'probe-')); writeFileSync(path.join(dir, 'f.bin'), Buffer.alloc(1024)); console.log(dir);";

function runWithSetup(env: NodeJS.ProcessEnv): { dir: string; stderr: string } {
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--import', setup, '--input-type=module', '-e', writer], { encoding: 'utf8', env });
  assert.equal(child.status, 0, child.stderr);
  return { dir: child.stdout.trim(), stderr: child.stderr };
}

describe('test/setup.ts', () => {
  it("removes a test process's temporary folder when it exits", () => {
    const { dir } = runWithSetup({ ...process.env, EDEN_KEEP_TEST_FILES: '' });
    const scratch = path.dirname(dir);
    assert.match(path.basename(scratch), /^eden-test-/);
    assert.equal(path.dirname(scratch), tmpdir(), 'the folder is made under the temp folder the process was given');
    assert.equal(existsSync(dir), false, `${dir} was left behind`);
    assert.equal(existsSync(scratch), false, `${scratch} was left behind`);
  });

  it('keeps it, and says where, with EDEN_KEEP_TEST_FILES', () => {
    const { dir, stderr } = runWithSetup({ ...process.env, EDEN_KEEP_TEST_FILES: '1' });
    try {
      assert.deepEqual(readdirSync(dir), ['f.bin']);
      assert.match(stderr, new RegExp(`temporary files kept in ${path.dirname(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});
