/**
 * Optional dependencies of the test suite (Debian tools, the native kernels, a WebGPU adapter,
 * Chromium, PyTorch). Where one is missing a test skips and says why — unless the environment
 * variable EDEN_REQUIRE lists it (comma-separated, or 'all'): then the test fails. `.ci/run`
 * installs them all and sets EDEN_REQUIRE, so in CI a broken dependency fails the run instead of
 * hiding behind a skip.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export type Capability = 'native' | 'webgpu' | 'chromium' | 'torch' | 'dicom-tools';

export function isRequired(capability: Capability): boolean {
  const list = (process.env['EDEN_REQUIRE'] ?? '').split(',').map((s) => s.trim());
  return list.includes('all') || list.includes(capability);
}

/** Skip with `reason`, or fail with it when EDEN_REQUIRE names the capability. */
export function skipOrFail(t: TestContext, capability: Capability, reason: string): void {
  if (isRequired(capability)) assert.fail(`${reason} (required here: EDEN_REQUIRE=${process.env['EDEN_REQUIRE']})`);
  t.skip(reason);
}

/** Whether a command is on the PATH. */
export function hasTool(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).status === 0;
}

/** The DICOM tools from Debian's dcmtk / dicom3tools that a test needs. */
export function requireTool(command: string, t: TestContext): void {
  skipOrFail(t, 'dicom-tools', `${command} not found (Debian's dcmtk / dicom3tools)`);
}
