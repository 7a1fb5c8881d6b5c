// The converted-model cache under concurrency, crashes and changed checkpoints (the robustness
// review of the model cache): a published model is never removed or replaced under a reader,
// concurrent first loads end with one entry and every process loading it, a killed converter's
// temporary folder goes with the next run, a checkpoint whose weights changed is never served
// from a stale conversion, and `opt convert` builds exactly the graph a load looks up.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdir, open, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { loadOptModel } from '../../runtime/src/model.js';
import { type FixtureOptions, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { ids64, maxAbsDiff, naiveLogits, tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('model-cache');
after(() => tmp.remove());

/** Big enough that a conversion lasts long enough to be killed in the middle of it. */
const SHAPE: FixtureOptions['config'] = { hidden_size: 64, num_hidden_layers: 6, ffn_dim: 256, num_attention_heads: 4 };
const ENTRY = /^([0-9a-f]{32})(?:\.(\d+))?$/;
const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost';

async function cacheListing(cacheDir: string): Promise<{ entries: string[]; keys: string[]; tmps: string[]; locks: string[] }> {
  const names = await readdir(join(cacheDir, 'onnx')).catch(() => [] as string[]);
  const entries = names.filter((n) => ENTRY.test(n));
  return {
    entries,
    keys: [...new Set(entries.map((n) => ENTRY.exec(n)![1]!))],
    tmps: names.filter((n) => n.includes('.tmp')),
    locks: names.filter((n) => n.endsWith('.lock')),
  };
}

interface Exit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): { child: ChildProcess; done: Promise<Exit> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<Exit>((resolve) =>
    child.on('close', (code, signal) => resolve({ pid: child.pid!, code, signal, stdout, stderr })),
  );
  return { child, done };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('finding 1 + 3: concurrent first loads of one model, one of them killed while converting', () => {
  test('every survivor gets the right logits, no temporary folder or lock stays, one entry per key', { timeout: 120_000 }, async (t) => {
    const cacheDir = join(tmp.path, 'concurrent-cache');
    await mkdir(join(cacheDir, 'onnx'), { recursive: true });
    const N = 4;
    const started = performance.now();
    for (const round of [0, 1, 2]) {
      const f = await writeOptCheckpoint(join(tmp.path, `concurrent-${round}`), { tokenizer: true, seed: 40 + round, config: SHAPE });
      const runs = Array.from({ length: N }, () =>
        cli(['logits', '--model', f.dir, '--cache-dir', cacheDir, '--dtype', 'fp32', '--text', 'hi', '--top-k', '1']),
      );
      const ours = new Map(runs.map((r) => [r.child.pid, r.child]));
      // Rounds 1 and 2: SIGKILL whichever process starts converting, the moment its temporary folder appears.
      let killed: number | undefined;
      const watcher =
        round === 0
          ? undefined
          : watch(join(cacheDir, 'onnx'), (_event, name) => {
              const m = /\.tmp\..+\.(\d+)\.\d+$/.exec(String(name ?? ''));
              const child = m ? ours.get(Number(m[1])) : undefined;
              if (child && killed === undefined) {
                killed = child.pid;
                child.kill('SIGKILL');
              }
            });
      const exits = await Promise.all(runs.map((r) => r.done));
      watcher?.close();
      if (round > 0) {
        assert.ok(killed !== undefined, 'a converter was seen and killed');
        assert.equal(exits.find((e) => e.pid === killed)!.signal, 'SIGKILL');
      }
      for (const e of exits.filter((x) => x.pid !== killed)) {
        assert.equal(e.code, 0, `process ${e.pid}: ${e.stderr}`);
        const out = JSON.parse(e.stdout) as { ids: number[]; logits: number[] };
        const ref = naiveLogits(f, [out.ids])[0]!.at(-1)!;
        assert.ok(maxAbsDiff(out.logits, ref) < 1e-4, `process ${e.pid}: logits off by ${maxAbsDiff(out.logits, ref)}`);
      }
      const listing = await cacheListing(cacheDir);
      assert.deepEqual(listing.tmps, [], "the killed converter's temporary folder went with the next successful run");
      assert.deepEqual(listing.locks, []);
      assert.equal(listing.entries.length, round + 1, `one entry per key: ${listing.entries.join(', ')}`);
      assert.equal(listing.keys.length, round + 1);
    }
    t.diagnostic(`3 rounds of ${N} processes: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });

  test('parallel `convert --force` runs all succeed and leave one entry', { timeout: 60_000 }, async () => {
    const cacheDir = join(tmp.path, 'force-parallel-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'force-parallel'), { tokenizer: true, seed: 45, config: SHAPE });
    const args = ['convert', '--model', f.dir, '--cache-dir', cacheDir, '--dtype', 'fp32'];
    assert.equal((await cli(args).done).code, 0);
    const exits = await Promise.all(Array.from({ length: 4 }, () => cli([...args, '--force']).done));
    for (const e of exits) assert.equal(e.code, 0, e.stderr);
    assert.equal(new Set(exits.map((e) => (JSON.parse(e.stdout) as { model_path: string }).model_path)).size, 1);
    const listing = await cacheListing(cacheDir);
    assert.equal(listing.entries.length, 1);
    assert.deepEqual(listing.tmps, []);
  });

  test("a converter of this host that died is swept; a live one, and another host's, are not", async () => {
    const cacheDir = join(tmp.path, 'sweep-cache');
    const onnxDir = join(cacheDir, 'onnx');
    await mkdir(onnxDir, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', '0']).pid; // exited: its pid names no process now
    const alive = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    after(() => alive.kill());
    const key = 'ab'.repeat(16);
    const leftovers = {
      dead: `${key}.tmp.${host}.${dead}.1`,
      live: `${key}.tmp.${host}.${alive.pid}.2`,
      elsewhere: `${key}.tmp.some-other-host.${dead}.3`,
    };
    for (const name of Object.values(leftovers)) {
      await mkdir(join(onnxDir, name));
      await writeFile(join(onnxDir, name, 'model.onnx.data'), Buffer.alloc(1024));
    }
    // A lock's content file a converter died before linking into place (and one of a live process).
    const lockTmps = { dead: `${key}.lock.${host}.${dead}.0123456789abcdef`, live: `${key}.lock.${host}.${alive.pid}.0123456789abcdef` };
    for (const name of Object.values(lockTmps)) await writeFile(join(onnxDir, name), '{}');
    // A lock its dead owner left: it must not hold the conversion up.
    const f = await writeOptCheckpoint(join(tmp.path, 'sweep-model'), { seed: 50 });
    const first = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    const keyOf = /onnx[/\\]([0-9a-f]{32})[/\\]/.exec(first.modelPath)![1]!;
    await writeFile(join(onnxDir, `${keyOf}.lock`), JSON.stringify({ host, pid: dead, nonce: 'x' }));
    const forced = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir, force: true });
    assert.equal(forced.converted, true);
    const names = await readdir(onnxDir);
    assert.ok(!names.includes(leftovers.dead), "a dead converter's folder is removed");
    assert.ok(names.includes(leftovers.live), "a live process's folder is kept");
    assert.ok(names.includes(leftovers.elsewhere), "another host's folder is kept: its pids cannot be checked here");
    assert.ok(!names.includes(`${keyOf}.lock`), 'the stale lock was taken over and released');
    assert.ok(
      !names.includes(lockTmps.dead) && names.includes(lockTmps.live),
      "a dead converter's unlinked lock content is removed, a live one's kept",
    );
  });

  test('--force converts again but never replaces the published entry under a reader', async () => {
    const cacheDir = join(tmp.path, 'force-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'force-model'), { seed: 51 });
    const first = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    const before = await stat(`${first.modelPath}.data`);
    const forced = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir, force: true });
    assert.equal(forced.converted, true);
    assert.equal(forced.modelPath, first.modelPath);
    const after = await stat(`${first.modelPath}.data`);
    assert.equal(after.ino, before.ino, 'the same file: not deleted and rewritten');
    assert.equal(after.mtimeMs, before.mtimeMs);
    const listing = await cacheListing(cacheDir);
    assert.equal(listing.entries.length, 1);
    assert.deepEqual(listing.tmps, []);
  });

  test('a damaged entry (its weights file cut short) is rebuilt under a new name, then removed', async () => {
    const cacheDir = join(tmp.path, 'damaged-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'damaged-model'), { seed: 52 });
    const first = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    await writeFile(`${first.modelPath}.data`, Buffer.alloc(16));
    const again = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    assert.equal(again.converted, true);
    assert.notEqual(again.modelPath, first.modelPath);
    const listing = await cacheListing(cacheDir);
    assert.equal(listing.entries.length, 1, listing.entries.join(', '));
    assert.match(listing.entries[0]!, /\.1$/);
  });
});

describe('finding 2: a checkpoint whose weights changed is never served from a stale conversion', () => {
  test("1.5 MB zeroed in place, size kept, mtime put back with utimes: the logits are the new weights'", { timeout: 60_000 }, async () => {
    const cacheDir = join(tmp.path, 'stale-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'stale-model'), { tokenizer: true, seed: 60 });
    const file = join(f.dir, 'model.safetensors');
    const T = 1_700_000_000; // whole seconds, so utimes puts it back exactly
    await utimes(file, T, T);
    // Past the racy window (a ctime this fresh could still change unseen): the first load memoizes the hash.
    await sleep(2_200);
    const ids = [2, 31414, 232, 328];
    const logitsOf = async (cache: string) => {
      const model = await loadOptModel(f.dir, { dtype: 'fp32', device: 'cpu', cacheDir: cache });
      try {
        const out = await model.decoder.forward({
          inputIds: ids64([ids]),
          batch: 1,
          attentionMask: ids64([ids.map(() => 1)]),
          logitsToKeep: 1,
        });
        return { logits: Float32Array.from(out.logits), convertSeconds: model.source.convertSeconds };
      } finally {
        await model.dispose();
      }
    };
    const first = await logitsOf(cacheDir);
    assert.ok(maxAbsDiff(first.logits, naiveLogits(f, [ids])[0]!.at(-1)!) < 1e-4);
    const cached = await logitsOf(cacheDir);
    assert.equal(cached.convertSeconds, 0, 'an unchanged folder comes from the cache');

    // Zero 1.5 MB of the tied embedding, clear of the start, middle and end (where a sampling key would look).
    const old = await stat(file, { bigint: true });
    const size = Number(old.size);
    const at = (1 << 20) + 65_536;
    assert.ok(at + 1_500_000 < size / 2 - (1 << 19), 'the changed bytes sit between the samples');
    const fh = await open(file, 'r+');
    await fh.write(Buffer.alloc(1_500_000), 0, 1_500_000, at); // in place: same inode, same size
    await fh.close();
    await utimes(file, T, T);
    const now = await stat(file, { bigint: true });
    assert.equal(now.ino, old.ino);
    assert.equal(now.size, old.size);
    assert.equal(now.mtimeNs, old.mtimeNs, 'mtime put back: only the content changed');

    const second = await logitsOf(cacheDir);
    const fresh = await logitsOf(join(tmp.path, 'stale-fresh-cache')); // the oracle: converted from scratch
    assert.ok(second.convertSeconds > 0, 'converted again');
    assert.ok(maxAbsDiff(fresh.logits, first.logits) > 1e-3, 'the change shows in the logits');
    assert.ok(maxAbsDiff(second.logits, fresh.logits) < 1e-6, "the new weights' logits, not the cached ones");
    // The memo the first loads used (so the case above went through it, not around it).
    assert.equal((await readdir(join(cacheDir, 'fingerprints'))).length, 1, 'the hash of the weights was memoized');
  });

  test("a Hub snapshot is keyed by its blobs' sha256 names, without hashing them", async () => {
    const cacheDir = join(tmp.path, 'hub-key-cache');
    const repo = join(tmp.path, 'hub', 'models--facebook--opt-tiny');
    const snapshot = async (commit: string, seed: number) => {
      const src = await writeOptCheckpoint(join(tmp.path, `hub-src-${seed}`), { seed });
      const bytes = await readFile(join(src.dir, 'model.safetensors'));
      const sha = createHash('sha256').update(bytes).digest('hex');
      await mkdir(join(repo, 'blobs'), { recursive: true });
      await writeFile(join(repo, 'blobs', sha), bytes);
      const dir = join(repo, 'snapshots', commit);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'config.json'), await readFile(join(src.dir, 'config.json')));
      await symlink(join('..', '..', 'blobs', sha), join(dir, 'model.safetensors'));
      return dir;
    };
    const a = await snapshot('a'.repeat(40), 70);
    const b = await snapshot('b'.repeat(40), 70); // same blob
    const c = await snapshot('c'.repeat(40), 71); // another blob
    const ra = await convertCheckpoint(a, { dtype: 'fp32', cacheDir });
    const rb = await convertCheckpoint(b, { dtype: 'fp32', cacheDir });
    const rc = await convertCheckpoint(c, { dtype: 'fp32', cacheDir });
    assert.equal(rb.converted, false);
    assert.equal(rb.modelPath, ra.modelPath);
    assert.notEqual(rc.modelPath, ra.modelPath);
    assert.deepEqual(await readdir(join(cacheDir, 'fingerprints')).catch(() => []), [], 'no weight file was hashed');
  });
});

describe('finding 4: `opt convert` builds the graph the loads look up', () => {
  test('convert, then load: the load converts nothing, and the cache holds one entry', { timeout: 60_000 }, async () => {
    const cacheDir = join(tmp.path, 'convert-then-load-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'convert-then-load'), { tokenizer: true, seed: 80 });
    const run = await cli(['convert', '--model', f.dir, '--cache-dir', cacheDir]).done;
    assert.equal(run.code, 0, run.stderr);
    const converted = JSON.parse(run.stdout) as { model_path: string; converted: boolean };
    assert.equal(converted.converted, true);
    const model = await loadOptModel(f.dir, { cacheDir });
    try {
      assert.equal(model.source.convertSeconds, 0, 'the load found what convert built');
      assert.equal(model.source.modelPath, converted.model_path);
    } finally {
      await model.dispose();
    }
    assert.equal((await cacheListing(cacheDir)).entries.length, 1);
  });

  test('options that build the same graph share an entry (defaults spelled out or not)', async () => {
    const cacheDir = join(tmp.path, 'canonical-cache');
    const f = await writeOptCheckpoint(join(tmp.path, 'canonical'), { seed: 81 });
    const a = await convertCheckpoint(f.dir, { dtype: 'int8', cacheDir });
    const b = await convertCheckpoint(f.dir, { dtype: 'int8', cacheDir, kvCache: 'append', fused: true, blockSize: 128, kvDtype: 'fp32' });
    assert.equal(b.converted, false);
    assert.equal(b.modelPath, a.modelPath);
  });
});
