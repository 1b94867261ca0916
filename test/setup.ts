/**
 * Loaded before every test file (package.json's test scripts pass it with --import, and the test
 * runner hands it on to each file's process): the environment the suite runs in.
 *
 * Temporary files. Every process of the suite gets its own folder under the system's temp folder
 * and points TMPDIR (TMP, TEMP on Windows) at it, so the tests' mkdtemp folders, the CLI children
 * they spawn, npm's pack and install and Chromium's profile all land there; it is removed when the
 * process exits, passed or failed. Before, every run left its folders behind (the package test's
 * install alone 678 MB), and a developer's /tmp held 61 GB of them after ~45 runs.
 * EDEN_KEEP_TEST_FILES=1 keeps the folders for a post-mortem and prints where they are. A process
 * killed by a signal leaves its folder (named eden-test-*).
 *
 * Vector width. Without a GPU the webgpu tests run on Mesa's lavapipe, which compiles every compute
 * shader with LLVM for the CPU's widest vectors (256 bits with AVX2 or AVX-512). A cold shader
 * cache — every CI run — made compilation most of those tests' time: test/webgpu-*.test.ts took
 * 290 s, 164 s at 128-bit vectors (2 files at a time, a new empty MESA_SHADER_CACHE_DIR each; 93 of
 * 93 pass either way), webgpu-ops alone 157 s cold, 97 s at 128 bits, 31 s warm. The shaders
 * compute the same values at either width; lavapipe's subgroups are 4 lanes instead of 8 (the
 * tests check subgroup reductions against the cpu backend, not a lane count). A variable the user
 * has set is kept. Eden itself sets nothing: a user's lavapipe keeps its defaults.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const scratch = mkdtempSync(path.join(tmpdir(), 'eden-test-'));
for (const name of ['TMPDIR', 'TMP', 'TEMP']) process.env[name] = scratch;
process.on('exit', () => {
  if (process.env['EDEN_KEEP_TEST_FILES']) process.stderr.write(`eden tests: temporary files kept in ${scratch}\n`);
  else rmSync(scratch, { recursive: true, force: true });
});

process.env['LP_NATIVE_VECTOR_WIDTH'] ??= '128';
