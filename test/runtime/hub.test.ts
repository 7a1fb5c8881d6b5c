// resolveModel against a local fake Hub: cache layout as huggingface_hub writes it, reuse of a
// Python-made cache offline, auth, retries, resume with Range, integrity checks and abort.
// Everything runs on 127.0.0.1 with temporary cache folders; no real network.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CheckpointError } from '../../runtime/src/errors.js';
import { UsageError } from '../../protocol/errors.js';
import { hubCacheDir, repoFolderName } from '../../runtime/src/hub/hubCache.js';
import { resolveModel } from '../../runtime/src/hub/resolveModel.js';
import { FakeHub, type FakeRepo, commitOf, gitBlobSha, isLfs, sha256 } from '../fixtures/fakeHub.js';

const ID = 'facebook/opt-tiny';
const WEIGHTS = randomBytes(1_500_000);
const OPT_FILES: Record<string, string | Buffer> = {
  'config.json': JSON.stringify({ architectures: ['OPTForCausalLM'], model_type: 'opt', hidden_size: 16 }),
  'generation_config.json': JSON.stringify({ bos_token_id: 2, eos_token_id: 2 }),
  'vocab.json': JSON.stringify({ '<s>': 0, '<pad>': 1, '</s>': 2, hello: 3 }),
  'merges.txt': '#version: 0.2\nh e\n',
  'added_tokens.json': '', // empty: a zero-byte blob must download too
  'tokenizer_config.json': JSON.stringify({ add_bos_token: true }),
  'special_tokens_map.json': JSON.stringify({ bos_token: '</s>' }),
  'model.safetensors': WEIGHTS,
  'pytorch_model.bin': randomBytes(4096),
  'README.md': '# not needed\n',
};
const SMALL = [
  'config.json',
  'generation_config.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
];

let hub: FakeHub;
let tmp: string;
let n = 0;

before(async () => {
  hub = await FakeHub.start([{ id: ID, files: OPT_FILES }]);
  tmp = await mkdtemp(join(tmpdir(), 'opt-hub-'));
});
after(async () => {
  await hub.close();
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh cache and an environment that reads nothing from the real one (no HF_TOKEN leaking in). */
function setup(extra: NodeJS.ProcessEnv = {}) {
  const home = join(tmp, `case-${++n}`);
  const env: NodeJS.ProcessEnv = { HOME: home, HF_HOME: join(home, 'hf'), HF_ENDPOINT: `${hub.url}/`, ...extra };
  return { env, cache: hubCacheDir(env), home };
}

function addRepo(repo: Omit<FakeRepo, 'id'> & { id?: string }): string {
  const id = repo.id ?? `test/repo-${++n}`;
  hub.add({ ...repo, id });
  return id;
}

function resetFaults() {
  hub.log.length = 0;
  hub.apiDown = false;
  hub.ignoreRange = false;
  hub.cdnHost = '127.0.0.1';
  hub.broken.clear();
  hub.failTimes.clear();
  hub.cutAfter.clear();
  hub.stallAfter.clear();
  hub.corrupt.clear();
  hub.onStall = undefined;
}

const blobName = (file: string, content: string | Buffer) =>
  isLfs(file) ? sha256(Buffer.from(content)) : gitBlobSha(Buffer.from(content));

async function assertHubLayout(cache: string, id: string, files: Record<string, string | Buffer>, names: string[]) {
  const repoDir = join(cache, repoFolderName(id));
  const commit = commitOf(id);
  assert.equal(await readFile(join(repoDir, 'refs', 'main'), 'utf8'), commit, 'refs/main holds the bare commit hash');
  for (const name of names) {
    const pointer = join(repoDir, 'snapshots', commit, name);
    assert.ok((await lstat(pointer)).isSymbolicLink(), `${name} is a symlink`);
    assert.equal(await readlink(pointer), `../../blobs/${blobName(name, files[name]!)}`, `${name} links relatively to its blob`);
    assert.deepEqual(await readFile(pointer), Buffer.from(files[name]!), `${name} content`);
  }
  const blobs = await readdir(join(repoDir, 'blobs'));
  assert.deepEqual(blobs.sort(), names.map((f) => blobName(f, files[f]!)).sort(), 'one blob per file, named by etag, no leftovers');
}

describe('cache location', () => {
  test('follows huggingface_hub precedence: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, ~/.cache', () => {
    assert.equal(hubCacheDir({ HOME: '/h', HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' }), '/a');
    assert.equal(hubCacheDir({ HOME: '/h', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' }), '/b');
    assert.equal(hubCacheDir({ HOME: '/h', HF_HOME: '/c', XDG_CACHE_HOME: '/x' }), '/c/hub');
    assert.equal(hubCacheDir({ HOME: '/h', XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
    assert.equal(hubCacheDir({ HOME: '/h' }), '/h/.cache/huggingface/hub');
    assert.equal(hubCacheDir({ HOME: '/h', HF_HOME: '~/hf' }), '/h/hf/hub');
    assert.equal(repoFolderName('facebook/opt-125m'), 'models--facebook--opt-125m');
    assert.equal(repoFolderName('gpt2'), 'models--gpt2');
  });
});

describe('resolveModel', { timeout: 60_000 }, () => {
  test('returns an existing folder as is; rejects what is neither a folder nor a model id', async () => {
    const { env, home } = setup();
    await mkdir(home, { recursive: true });
    assert.equal(await resolveModel(home, { env }), home);
    await assert.rejects(
      resolveModel(join(home, 'nope', 'a', 'b'), { env }),
      (e: unknown) => e instanceof UsageError && /not found.*not a Hugging Face model id/.test(e.message),
    );
    await assert.rejects(resolveModel('./no/such', { env }), UsageError);
    await writeFile(join(home, 'config.json'), '{}');
    await assert.rejects(resolveModel(join(home, 'config.json'), { env }), /is a file/);
  });

  test('downloads an OPT model into the huggingface_hub layout, preferring model.safetensors', async () => {
    resetFaults();
    const { env, cache } = setup();
    const events: Array<{ file: string; received: number; total: number | undefined }> = [];
    const dir = await resolveModel(ID, { env, onProgress: (p) => events.push(p) });
    assert.equal(dir, join(cache, repoFolderName(ID), 'snapshots', commitOf(ID)));
    await assertHubLayout(cache, ID, OPT_FILES, [...SMALL, 'model.safetensors']);
    assert.ok(!hub.log.some((r) => r.path.includes('pytorch_model.bin')), 'the .bin is not fetched when safetensors exist');
    assert.ok(!hub.log.some((r) => r.path.includes('README')), 'files the model does not need are skipped');
    assert.ok(
      hub.log.every((r) => r.authorization === undefined),
      'no token, no Authorization header',
    );
    assert.ok(
      hub.log.some((r) => r.path.startsWith('/cdn/')),
      'LFS redirect followed',
    );
    const last = events.filter((e) => e.file === 'model.safetensors').at(-1);
    assert.deepEqual(last, { file: 'model.safetensors', received: WEIGHTS.length, total: WEIGHTS.length });

    // A second call finds everything: one API call, nothing downloaded.
    hub.log.length = 0;
    assert.equal(await resolveModel(ID, { env }), dir);
    assert.deepEqual(
      hub.log.map((r) => r.path),
      [`/api/models/${ID}/revision/main`],
    );
  });

  test('takes the sharded safetensors index and its shards, or pytorch_model.bin when that is all there is', async () => {
    resetFaults();
    const shard1 = randomBytes(3000),
      shard2 = randomBytes(2000);
    const index = JSON.stringify({
      metadata: {},
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00001-of-00002.safetensors' },
    });
    const small = Object.fromEntries(SMALL.map((f) => [f, OPT_FILES[f]!]));
    const sharded = {
      ...small,
      'model.safetensors.index.json': index,
      'model-00001-of-00002.safetensors': shard1,
      'model-00002-of-00002.safetensors': shard2,
      'pytorch_model.bin': randomBytes(100),
    };
    const id1 = addRepo({ files: sharded });
    const { env, cache } = setup();
    await resolveModel(id1, { env });
    await assertHubLayout(cache, id1, sharded, [
      ...SMALL,
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);

    // A shard name from the index never escapes the snapshot folder; nor does a revision.
    const evil = addRepo({
      files: { ...small, 'model.safetensors.index.json': JSON.stringify({ weight_map: { a: '../../../escape.safetensors' } }) },
    });
    await assert.rejects(
      resolveModel(evil, { env }),
      (e: unknown) => e instanceof CheckpointError && /not a safe file name/.test(e.message),
    );
    await assert.rejects(resolveModel(ID, { env, revision: '../../x' }), UsageError);

    const binOnly = { ...small, 'pytorch_model.bin': randomBytes(5000) };
    const id2 = addRepo({ files: binOnly });
    await resolveModel(id2, { env });
    await assertHubLayout(cache, id2, binOnly, [...SMALL, 'pytorch_model.bin']);
  });

  test('uses a cache left by Python offline, with the server down, and for a pinned commit without any request', async () => {
    resetFaults();
    const { env, cache } = setup();
    const dir = await writePythonCache(cache, ID, OPT_FILES);
    assert.equal(await resolveModel(ID, { env: { ...env, HF_HUB_OFFLINE: '1' } }), dir);
    assert.equal(await resolveModel(ID, { env: { ...env, TRANSFORMERS_OFFLINE: 'true' } }), dir);
    assert.equal(await resolveModel(ID, { env, revision: commitOf(ID) }), dir);
    assert.equal(hub.log.length, 0, 'not one request');
    const down = await FakeHub.start();
    const deadUrl = down.url;
    await down.close();
    const t0 = Date.now();
    assert.equal(await resolveModel(ID, { env: { ...env, HF_ENDPOINT: deadUrl } }), dir);
    assert.ok(Date.now() - t0 < 2000, 'falls back to the cache without retrying first');
    // Online with the Hub up: the same commit, so only the API call, and the Python-made blobs are kept.
    assert.equal(await resolveModel(ID, { env }), dir);
    assert.equal(hub.downloads().length, 0);
  });

  test('offline with an empty cache, or a dead server, fails saying what to do', async () => {
    resetFaults();
    const { env } = setup();
    await assert.rejects(
      resolveModel(ID, { env: { ...env, HF_HUB_OFFLINE: 'YES' } }),
      (e: unknown) => e instanceof CheckpointError && /not in the Hugging Face cache/.test(e.message) && /HF_HUB_OFFLINE/.test(e.message),
    );
    assert.equal(hub.log.length, 0);
    const down = await FakeHub.start();
    const deadUrl = down.url;
    await down.close();
    await assert.rejects(
      resolveModel(ID, { env: { ...env, HF_ENDPOINT: deadUrl } }),
      (e: unknown) =>
        e instanceof CheckpointError &&
        /could not reach/.test(e.message) &&
        /ECONNREFUSED/.test(e.message) &&
        /HF_HUB_OFFLINE=1/.test(e.message),
    );
  });

  test('honours HF_ENDPOINT, defaulting to https://huggingface.co (seen through the fetch option)', async () => {
    const { env } = setup();
    delete env.HF_ENDPOINT;
    const urls: string[] = [];
    const fakeFetch = (async (url: string | URL | Request) => {
      urls.push(String(url));
      throw new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } });
    }) as typeof fetch;
    await assert.rejects(resolveModel('facebook/opt-125m', { env, fetch: fakeFetch }), /ENOTFOUND/);
    assert.equal(urls[0], 'https://huggingface.co/api/models/facebook/opt-125m/revision/main');
  });

  test('private repos: 401 explains HF_TOKEN; HF_TOKEN and HUGGING_FACE_HUB_TOKEN are sent as Bearer', async () => {
    resetFaults();
    const id = addRepo({ files: OPT_FILES, token: 'hf_secret' });
    const { env, cache } = setup();
    await assert.rejects(
      resolveModel(id, { env }),
      (e: unknown) => e instanceof CheckpointError && /gated or private/.test(e.message) && /set HF_TOKEN/.test(e.message),
    );
    await assert.rejects(resolveModel(id, { env: { ...env, HF_TOKEN: 'hf_wrong' } }), /HF_TOKEN is set but not accepted/);
    await resolveModel(id, { env: { ...env, HF_TOKEN: 'hf_secret' } });
    await assertHubLayout(cache, id, OPT_FILES, [...SMALL, 'model.safetensors']);
    const env2 = setup().env;
    await resolveModel(id, { env: { ...env2, HUGGING_FACE_HUB_TOKEN: 'hf_secret' } });
    const gated = addRepo({ files: OPT_FILES, gated: true });
    await assert.rejects(
      resolveModel(gated, { env: { ...env, HF_TOKEN: 'hf_secret' } }),
      (e: unknown) =>
        e instanceof CheckpointError &&
        /HTTP 403/.test(e.message) &&
        /gated or private/.test(e.message) &&
        /accepted the conditions/.test(e.message),
    );
  });

  test('does not forward the token when the LFS redirect leaves the Hub host', async () => {
    resetFaults();
    hub.cdnHost = 'localhost';
    const id = addRepo({ files: OPT_FILES, token: 'hf_secret' });
    const { env, cache } = setup({ HF_TOKEN: 'hf_secret' });
    await resolveModel(id, { env });
    await assertHubLayout(cache, id, OPT_FILES, [...SMALL, 'model.safetensors']);
    const cdn = hub.log.filter((r) => r.path.startsWith('/cdn/'));
    assert.ok(cdn.length > 0 && cdn.every((r) => r.host.startsWith('localhost:') && r.authorization === undefined), 'CDN got no token');
    assert.ok(
      hub.log.filter((r) => !r.path.startsWith('/cdn/')).every((r) => r.authorization === 'Bearer hf_secret'),
      'the Hub got it',
    );
  });

  test('404: no such model, no such revision', async () => {
    resetFaults();
    const { env } = setup({ HF_TOKEN: 'hf_any' });
    await assert.rejects(
      resolveModel('nobody/nothing', { env }),
      (e: unknown) => e instanceof CheckpointError && /no such model \(or revision "main"\) on the Hub/.test(e.message),
    );
    await assert.rejects(resolveModel(ID, { env, revision: 'v9' }), /no such model \(or revision "v9"\)/);
    // Anonymous, the Hub hides whether a repo exists: the 401 message covers both.
    await assert.rejects(resolveModel('nobody/nothing', { env: setup().env }), /gated or private, or does not exist/);
  });

  test('5xx: retried with backoff until it works; a permanent 500 ends in a clear error', async () => {
    resetFaults();
    const { env, cache } = setup();
    hub.failTimes.set('/api/', 2);
    hub.failTimes.set(`/cdn/${sha256(WEIGHTS)}`, 1);
    await resolveModel(ID, { env });
    await assertHubLayout(cache, ID, OPT_FILES, [...SMALL, 'model.safetensors']);
    assert.equal(hub.log.filter((r) => r.path.startsWith('/api/')).length, 3);
    assert.equal(hub.log.filter((r) => r.method === 'GET' && r.path.startsWith('/cdn/')).length, 2);

    resetFaults();
    const id = addRepo({ files: OPT_FILES });
    hub.broken.add(id);
    const t0 = Date.now();
    await assert.rejects(
      resolveModel(id, { env }),
      (e: unknown) => e instanceof CheckpointError && /HTTP 500/.test(e.message) && /try again later/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 10_000);
    assert.ok(hub.log.length >= 4, 'it retried');
  });

  test('falls back to HEAD requests on resolve URLs when the models API fails', async () => {
    resetFaults();
    hub.apiDown = true;
    const { env, cache } = setup();
    await resolveModel(ID, { env });
    await assertHubLayout(cache, ID, OPT_FILES, [...SMALL, 'model.safetensors']);
    assert.ok(
      hub.log.some((r) => r.method === 'HEAD' && r.path.endsWith('/tokenizer.json') && r.status === 404),
      'probed an absent file',
    );
    assert.ok(!hub.log.some((r) => r.method === 'GET' && r.path.includes('pytorch_model.bin')));
  });

  test('a download cut off halfway resumes with a Range request and the sha256 matches', async () => {
    resetFaults();
    const { env, cache } = setup();
    const oid = sha256(WEIGHTS);
    hub.cutAfter.set(oid, 700_000);
    await resolveModel(ID, { env });
    const cdn = hub.log.filter((r) => r.method === 'GET' && r.path.startsWith(`/cdn/${oid}`));
    assert.equal(cdn.length, 2);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1]!.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 700_000, `resumed at ${cdn[1]!.range}`);
    assert.equal(cdn[1]!.status, 206);
    const blob = await readFile(join(cache, repoFolderName(ID), 'blobs', oid));
    assert.equal(sha256(blob), oid);
  });

  test('resumes a .incomplete file left by an earlier run (or by Python), and restarts when Range is ignored', async () => {
    resetFaults();
    const oid = sha256(WEIGHTS);
    const { env, cache } = setup();
    const blobs = join(cache, repoFolderName(ID), 'blobs');
    await mkdir(blobs, { recursive: true });
    await writeFile(join(blobs, `${oid}.incomplete`), WEIGHTS.subarray(0, 100_000));
    await resolveModel(ID, { env });
    assert.equal(hub.log.find((r) => r.path.startsWith(`/cdn/${oid}`))?.range, 'bytes=100000-');
    assert.equal(sha256(await readFile(join(blobs, oid))), oid);

    resetFaults();
    hub.ignoreRange = true;
    const second = setup();
    const blobs2 = join(second.cache, repoFolderName(ID), 'blobs');
    await mkdir(blobs2, { recursive: true });
    await writeFile(join(blobs2, `${oid}.incomplete`), randomBytes(100_000)); // garbage: appending would corrupt
    await resolveModel(ID, { env: second.env });
    assert.equal(hub.log.find((r) => r.path.startsWith(`/cdn/${oid}`))?.status, 200);
    assert.equal(sha256(await readFile(join(blobs2, oid))), oid);
  });

  test('rejects LFS content whose sha256 differs and keeps nothing of it', async () => {
    resetFaults();
    const oid = sha256(WEIGHTS);
    hub.corrupt.add(oid);
    const { env, cache } = setup();
    await assert.rejects(
      resolveModel(ID, { env }),
      (e: unknown) => e instanceof CheckpointError && /sha256/.test(e.message) && /deleted/.test(e.message),
    );
    const repoDir = join(cache, repoFolderName(ID));
    const blobs = await readdir(join(repoDir, 'blobs'));
    assert.ok(!blobs.some((b) => b.startsWith(oid)), `no blob or partial file for it: ${blobs.join(', ')}`);
    await assert.rejects(lstat(join(repoDir, 'snapshots', commitOf(ID), 'model.safetensors')));
    // Offline, the half-made snapshot is not passed off as a model.
    await assert.rejects(resolveModel(ID, { env: { ...env, HF_HUB_OFFLINE: '1' } }), /incomplete: it lacks model\.safetensors/);
  });

  test('abort mid-download rejects with the abort reason and keeps the .incomplete file for the next run', async () => {
    resetFaults();
    const oid = sha256(WEIGHTS);
    hub.stallAfter.set(oid, 400_000);
    const { env, cache } = setup();
    const partial = join(cache, repoFolderName(ID), 'blobs', `${oid}.incomplete`);
    const controller = new AbortController();
    // Cancel once the client has written everything the server sent before going quiet.
    hub.onStall = async () => {
      while ((await stat(partial).catch(() => undefined))?.size !== 400_000) await new Promise((r) => setTimeout(r, 10));
      controller.abort(new Error('user cancelled'));
    };
    await assert.rejects(resolveModel(ID, { env, signal: controller.signal }), /user cancelled/);
    assert.equal((await stat(partial)).size, 400_000);

    resetFaults();
    await resolveModel(ID, { env });
    assert.equal(hub.log.find((r) => r.path.startsWith(`/cdn/${oid}`))?.range, 'bytes=400000-');
    await assertHubLayout(cache, ID, OPT_FILES, [...SMALL, 'model.safetensors']);
  });

  test('with HF_HUB_DISABLE_SYMLINKS the snapshot holds the files themselves (huggingface_hub moves new blobs there)', async () => {
    resetFaults();
    const { env, cache } = setup({ HF_HUB_DISABLE_SYMLINKS: '1' });
    const dir = await resolveModel(ID, { env });
    for (const name of [...SMALL, 'model.safetensors']) {
      const st = await lstat(join(dir, name));
      assert.ok(st.isFile() && !st.isSymbolicLink(), `${name} is a plain file`);
      assert.deepEqual(await readFile(join(dir, name)), Buffer.from(OPT_FILES[name]!));
    }
    assert.deepEqual(await readdir(join(cache, repoFolderName(ID), 'blobs')), []);
    assert.equal(await resolveModel(ID, { env: { ...env, HF_HUB_OFFLINE: '1' } }), dir);
  });

  test('two concurrent calls share one download', async () => {
    resetFaults();
    const { env } = setup();
    const [a, b] = await Promise.all([resolveModel(ID, { env }), resolveModel(ID, { env })]);
    assert.equal(a, b);
    assert.equal(hub.log.filter((r) => r.method === 'GET' && r.path.startsWith('/cdn/')).length, 1);
  });
});

/** What `AutoModelForCausalLM.from_pretrained` + `AutoTokenizer` leave in the cache. */
async function writePythonCache(cache: string, id: string, files: Record<string, string | Buffer>): Promise<string> {
  const repoDir = join(cache, repoFolderName(id));
  const commit = commitOf(id);
  const snap = join(repoDir, 'snapshots', commit);
  await mkdir(join(repoDir, 'blobs'), { recursive: true });
  await mkdir(join(repoDir, 'refs'), { recursive: true });
  await mkdir(snap, { recursive: true });
  await writeFile(join(repoDir, 'refs', 'main'), commit);
  for (const name of [...SMALL, 'model.safetensors']) {
    const blob = blobName(name, files[name]!);
    await writeFile(join(repoDir, 'blobs', blob), files[name]!);
    await symlink(`../../blobs/${blob}`, join(snap, name));
  }
  return snap;
}
