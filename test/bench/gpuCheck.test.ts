// The packed GPU check (bench/gpu-check) as a person without Node would run it: pack into a
// temporary folder, then run.sh with a PATH that holds only the shell tools it uses (no node):
// it unpacks its own Node and runs the check on the CPU with a tiny model, bounded in time.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('gpu-check');
after(() => tmp.remove());

describe('bench/gpu-check pack and run.sh', { timeout: 300_000 }, () => {
  const pack = join(tmp.path, 'gpu-check');

  test('pack writes the bundle, the native modules, node.xz, run.sh and a tarball', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/gpu-check/pack.ts', '--out', pack, '--xz-level', '0'], {
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    for (const f of [
      'check.mjs',
      'node.xz',
      'run.sh',
      'README.txt',
      'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
      'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
      'node_modules/tokenizers/tokenizers.linux-x64-gnu.node',
      'node_modules/onnxruntime-common/dist/cjs/index.js',
    ]) {
      assert.ok(existsSync(join(pack, f)), `${f} is packed`);
    }
    assert.ok(existsSync(`${pack}.tar.gz`));
    assert.match(r.stdout, /CUDA provider (included|not included)/);
  });

  test('run.sh unpacks its Node and runs the check on the CPU with no node on PATH', () => {
    // Only the tools run.sh calls; `node` must not be among them.
    const bin = join(tmp.path, 'bin');
    mkdirSync(bin);
    for (const tool of ['sh', 'xz', 'mkdir', 'chmod', 'mv', 'dirname']) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      assert.ok(found, `${tool} is installed`);
      symlinkSync(found, join(bin, tool));
    }
    assert.notEqual(spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: bin } }).status, 0, 'node is not reachable');
    const out = join(tmp.path, 'results.json');
    const r = spawnSync(
      join(pack, 'run.sh'),
      ['--device', 'cpu', '--shapes', 'tiny', '--prompt', '16', '--steps', '4', '--batches', '1,8', '--out', out],
      { encoding: 'utf8', env: { PATH: bin, HOME: tmp.path }, cwd: tmp.path, timeout: 180_000 },
    );
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /\[tiny\] cpu fp16 vs CPU fp32: .*PASS/);
    assert.match(r.stdout, /tiny\s+cpu\s+fp16\s+pass .*\n.*tiny\s+cpu\s+fp16\s+pass/);
    assert.ok(existsSync(join(pack, 'node/bin/node')), 'Node was unpacked beside run.sh');
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      gpu: { name: string };
      machine: { node: string };
      results: {
        device: string;
        parity: { pass: boolean };
        timings: { batch: number; ttftMs: number; prefillTokensPerSecond: number; decodeTokensPerSecond: number }[];
      }[];
    };
    assert.equal(json.machine.node, process.version, 'the packed Node ran');
    assert.equal(json.results.length, 1);
    const [res] = json.results;
    assert.equal(res!.device, 'cpu');
    assert.ok(res!.parity.pass);
    assert.deepEqual(
      res!.timings.map((t) => t.batch),
      [1, 8],
    );
    for (const t of res!.timings) assert.ok(t.ttftMs > 0 && t.prefillTokensPerSecond > 0 && t.decodeTokensPerSecond > 0);
  });

  test('a device the machine lacks is refused with the reason, before any work', () => {
    const r = spawnSync(join(pack, 'run.sh'), ['--device', 'tpu'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /gpu-check: --device: unknown device "tpu"/);
  });
});
