/** The `eden` CLI as a user runs it: output, JSON, exit codes and one-line errors. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eden as runEden } from './helpers/cli.js';

const eden = (...args: string[]): ReturnType<typeof runEden> => runEden(args);

describe('eden CLI', () => {
  it('inspect summarises the bundled samples with their labels', () => {
    const r = eden('inspect', 'samples/hannover_covid19');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^images: 24$/m);
    assert.match(r.stdout, /labels: .*labels\.csv, key column 'image_id', 24 of 24 images labelled/);
    assert.match(r.stdout, /projection: /);
    // The licence and attribution files are named as non-images, and the summary says so.
    assert.match(r.stdout, /summary: 24 usable, 2 skipped \(not an image file \(2\)\)/);
  });

  it('inspect --json prints a machine-readable report', () => {
    const r = eden('inspect', '--json', 'samples/hannover_covid19');
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.images, 24);
    assert.equal(report.layout, 'folder');
    assert.equal(report.bitDepths['8'], 24);
  });

  it('misuse exits non-zero with a one-line message', () => {
    for (const args of [['inspect'], ['frobnicate'], ['inspect', '--nope', 'x']]) {
      const r = eden(...args);
      assert.notEqual(r.status, 0);
      assert.equal(r.stderr.trim().split('\n').length, 1, `stderr for ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^error: /);
    }
  });

  it('a folder with no usable image is an error; a missing folder is named', () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'eden-empty-'));
    const r = eden('inspect', empty);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no usable images in /);
    const m = eden('inspect', '/no/such/dir');
    assert.equal(m.status, 1);
    assert.equal(m.stderr.trim(), 'eden: /no/such/dir: no such file or folder');
  });

  it('--masks outside segmentation is refused by name', () => {
    const r = eden('evaluate', path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19'), '--masks', tmpdir(), '--task', 'classify', '--out', mkdtempSync(path.join(tmpdir(), 'eden-masks-')));
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim(), 'eden: --masks is for the segmentation tasks; classification takes its labels from a CSV (--labels), class folders or a .npz');
  });

  it('every command has --help', async () => {
    // In process: each command and subcommand of the real program prints its usage and exits 0.
    const { buildProgram } = await import('../src/cli/program.js');
    const names: string[][] = [[]];
    for (const c of buildProgram().commands) {
      names.push([c.name()]);
      for (const sub of c.commands) names.push([c.name(), sub.name()]);
    }
    assert.ok(names.length >= 16, `${names.length} commands`);
    for (const args of names) {
      const program = buildProgram();
      let out = '';
      program.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
      for (const c of program.commands) {
        c.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
        for (const sub of c.commands) sub.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
      }
      await assert.rejects(program.parseAsync(['node', 'eden', ...args, '--help']), (err: { code?: string; exitCode?: number }) => err.code === 'commander.helpDisplayed' && err.exitCode === 0);
      assert.match(out, new RegExp(`^Usage: eden${args.length ? ` ${args.join(' ')}` : ''} `, 'm'), `eden ${args.join(' ')} --help printed: ${out.slice(0, 200)}`);
    }
    // And through the executable, as a user runs it.
    const r = eden('segment', '--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Usage: eden segment /);
  });
});
