// `--model facebook/opt-125m`: a local folder is used as is; a Hub id is served from the standard
// Hugging Face cache, downloading only what an OPT model needs and is missing, like transformers'
// from_pretrained (snapshot_download's order: resolve the revision to a commit, then fetch by commit).
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from '../errors.js';
import { UsageError } from '../../../protocol/errors.js';
import { COMMIT_HASH, RepoCache, checkRelativeFile, envFlag, hfHome, hubCacheDir, isFile } from './hubCache.js';
import {
  DEFAULT_RETRIES,
  type FileMeta,
  type HubContext,
  HubRequestError,
  type Progress,
  downloadBlob,
  fileMeta,
  modelInfo,
  resolveUrl,
} from './hubDownload.js';

export interface ResolveModelOptions {
  /** Branch, tag or commit hash (default `main`). */
  revision?: string;
  onProgress?: Progress;
  signal?: AbortSignal;
  /** Where HF_* settings are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const OPTIONAL_FILES = ['generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'];
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json'];
/** In order of preference: safetensors never runs code, a single file beats shards. */
const WEIGHTS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];
// validate_repo_id in huggingface_hub: `name` or `org/name`, word characters, `-` and `.`, at most 96.
const REPO_ID = /^(?:[\w][\w.-]*\/)?[\w][\w.-]*$/;

/** A local folder as given, or the cache snapshot folder of a Hub model id (downloaded if needed). */
export async function resolveModel(idOrPath: string, options: ResolveModelOptions = {}): Promise<string> {
  const local = await stat(idOrPath).catch(() => undefined);
  if (local?.isDirectory()) return idOrPath;
  if (local)
    throw new UsageError(
      `${idOrPath} is a file: pass the model folder that holds config.json, or a Hugging Face model id such as facebook/opt-125m`,
    );
  if (!isRepoId(idOrPath)) {
    throw new UsageError(`model folder not found: ${idOrPath} (and it is not a Hugging Face model id such as facebook/opt-125m)`);
  }
  const env = options.env ?? process.env;
  const revision = options.revision ?? 'main';
  try {
    checkRelativeFile(revision);
  } catch {
    throw new UsageError(`revision ${JSON.stringify(revision)} is not a branch, tag or commit hash`);
  }
  const cache = new RepoCache(hubCacheDir(env), idOrPath);
  const cached = await cachedSnapshot(cache, revision);

  // HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE): the cache or nothing, no socket opened.
  if (envFlag(env, 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')) {
    if (cached?.missing.length === 0) return cached.dir;
    throw notCached(idOrPath, revision, cache, cached, 'HF_HUB_OFFLINE is set, so nothing is downloaded: unset it to download the model');
  }
  // A commit never changes: a complete snapshot of it needs no look-up (snapshot_download skips repo_info too).
  if (COMMIT_HASH.test(revision) && cached?.missing.length === 0) return cached.dir;

  const ctx: HubContext = {
    endpoint: (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: await hubToken(env),
    fetch: options.fetch ?? globalThis.fetch,
    signal: options.signal,
  };
  const describe = (err: unknown) => (err instanceof HubRequestError ? toCheckpointError(err, idOrPath, revision, ctx, cache) : err);
  let remote: Remote;
  try {
    // With a usable snapshot at hand, do not make the user wait through retries (huggingface_hub's fast fallback).
    remote = await openRemote(ctx, idOrPath, revision, cached?.missing.length === 0 ? 0 : DEFAULT_RETRIES);
  } catch (err) {
    // Hub down, unreachable, or refusing us: a complete cached snapshot of that revision still serves.
    if (err instanceof HubRequestError && err.kind !== 'integrity' && cached?.missing.length === 0) return cached.dir;
    throw describe(err);
  }
  try {
    return await fetchSnapshot(cache, remote, revision, { ...options, env });
  } catch (err) {
    throw describe(err);
  }
}

function isRepoId(id: string): boolean {
  return REPO_ID.test(id) && id.length <= 96 && !id.includes('--') && !id.includes('..') && !id.endsWith('.git');
}

/** HF_TOKEN, then the legacy HUGGING_FACE_HUB_TOKEN, then the file `hf auth login` writes (utils/_auth.py). */
async function hubToken(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const fromEnv = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (fromEnv) return fromEnv;
  const stored = await readFile(env.HF_TOKEN_PATH || join(hfHome(env), 'token'), 'utf8').catch(() => '');
  const token = stored.trim();
  return token && !/\s/.test(token) && !token.startsWith('{') ? token : undefined;
}

// ---- what an OPT model folder needs ----

/** A file set is usable when it has the config, a tokenizer and one complete weight layout. */
async function planWeights(
  has: (f: string) => Promise<boolean>,
  read: (f: string) => Promise<string | undefined>,
): Promise<{ file: string; shards: string[] } | undefined> {
  for (const file of WEIGHTS) {
    if (!(await has(file))) continue;
    if (!file.endsWith('.index.json')) return { file, shards: [] };
    const text = await read(file);
    return { file, shards: text === undefined ? [] : shardsOf(text, file) };
  }
  return undefined;
}

function shardsOf(indexText: string, file: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(indexText) as { weight_map?: unknown }).weight_map;
  } catch {
    map = undefined;
  }
  if (!map || typeof map !== 'object') throw new CheckpointError(file, 'is not a weight index: no weight_map object');
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  if (shards.some((s) => typeof s !== 'string')) throw new CheckpointError(file, 'weight_map has a shard name that is not a string');
  return (shards as string[]).map((s) => checkRelativeFile(s)).sort();
}

interface Snapshot {
  dir: string;
  missing: string[];
}

/** The snapshot a revision points at in the cache, and what it lacks to load (nothing = usable offline). */
async function cachedSnapshot(cache: RepoCache, revision: string): Promise<Snapshot | undefined> {
  const commit = await cache.commitFor(revision).catch(() => undefined);
  if (!commit || !(await isDir(cache.snapshotDir(commit)))) return undefined;
  const dir = cache.snapshotDir(commit);
  const has = (f: string) => isFile(join(dir, f));
  const missing: string[] = [];
  if (!(await has('config.json'))) missing.push('config.json');
  if (!(await has('tokenizer.json')) && !((await has('vocab.json')) && (await has('merges.txt'))))
    missing.push('vocab.json + merges.txt (or tokenizer.json)');
  const weights = await planWeights(has, (f) => readFile(join(dir, f), 'utf8').catch(() => undefined)).catch(() => undefined);
  if (!weights) missing.push(WEIGHTS.join(' or '));
  else for (const s of weights.shards) if (!(await has(s))) missing.push(s);
  return { dir, missing };
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

// ---- the Hub side ----

interface Remote {
  repo: string;
  commit: string;
  has(file: string): Promise<boolean>;
  meta(file: string): Promise<FileMeta>;
  ctx: HubContext;
}

/** The commit and file list from the models API, or (API missing or failing) from HEAD requests on resolve URLs. */
async function openRemote(ctx: HubContext, repo: string, revision: string, retries: number): Promise<Remote> {
  try {
    const info = await modelInfo(ctx, repo, revision, retries);
    const commit = info.sha;
    if (!COMMIT_HASH.test(commit))
      throw new HubRequestError('bad-response', `the models API gave the commit ${JSON.stringify(commit)}`, ctx.endpoint);
    return { repo, commit, ctx, has: async (f) => info.files.has(f), meta: (f) => fileMeta(ctx, repo, commit, f, DEFAULT_RETRIES) };
  } catch (err) {
    // Unreachable, refused, or a definite "no such repo/revision": HEAD requests would say the same.
    if (!(err instanceof HubRequestError) || ['network', 'auth', 'gated'].includes(err.kind) || isMissingRepo(err)) throw err;
  }
  const config = await fileMeta(ctx, repo, revision, 'config.json', retries);
  const commit = config.commit;
  if (!commit || !COMMIT_HASH.test(commit)) {
    throw new HubRequestError(
      'bad-response',
      'no X-Repo-Commit header: this does not look like a Hugging Face Hub (check HF_ENDPOINT)',
      resolveUrl(ctx.endpoint, repo, revision, 'config.json'),
    );
  }
  const probes = new Map<string, Promise<FileMeta | undefined>>([['config.json', Promise.resolve(config)]]);
  const probe = (f: string) => {
    if (!probes.has(f)) {
      probes.set(
        f,
        fileMeta(ctx, repo, commit, f, DEFAULT_RETRIES).catch((err: unknown) => {
          if (err instanceof HubRequestError && err.kind === 'not-found' && !isMissingRepo(err)) return undefined;
          throw err;
        }),
      );
    }
    return probes.get(f)!;
  };
  return {
    repo,
    commit,
    ctx,
    has: async (f) => (await probe(f)) !== undefined,
    meta: async (f) =>
      (await probe(f)) ??
      Promise.reject(
        new HubRequestError('not-found', `${f} is not in the repository`, resolveUrl(ctx.endpoint, repo, commit, f), 404, 'EntryNotFound'),
      ),
  };
}

function isMissingRepo(err: HubRequestError): boolean {
  return err.errorCode === 'RepoNotFound' || err.errorCode === 'RevisionNotFound';
}

// Two resolveModel calls in one process (the editor may ask twice) must not append to one .incomplete.
const inFlight = new Map<string, Promise<void>>();

async function fetchSnapshot(
  cache: RepoCache,
  remote: Remote,
  revision: string,
  options: ResolveModelOptions & { env: NodeJS.ProcessEnv },
): Promise<string> {
  const { repo, commit } = remote;
  await cache.writeRef(revision, commit);
  const pointer = (f: string) => cache.pointerPath(commit, f);
  const ensure = async (file: string) => {
    if (await isFile(pointer(file))) return;
    const meta = await remote.meta(file);
    const blob = cache.blobPath(meta.etag);
    let newBlob = false;
    for (;;) {
      // Re-checked after waiting: the other call may have linked it (or, without symlinks, moved the blob there).
      if (await isFile(pointer(file))) return;
      if (await isFile(blob)) break;
      const running = inFlight.get(blob);
      if (running) {
        await running.catch(() => undefined);
        continue;
      }
      const url = resolveUrl(remote.ctx.endpoint, repo, commit, file);
      const job = downloadBlob(remote.ctx, { url, blob, meta, file, onProgress: options.onProgress }).finally(() => inFlight.delete(blob));
      inFlight.set(blob, job);
      await job;
      newBlob = true;
      break;
    }
    await cache.link(blob, pointer(file), newBlob, options.env);
  };

  if (!(await remote.has('config.json')))
    throw new CheckpointError(`${repo}/config.json`, `is not in the repository at ${revision}`, 'is this a model repository?');
  const present = async (files: string[]) =>
    (await Promise.all(files.map(async (f) => ((await remote.has(f)) ? f : undefined)))).filter((f): f is string => f !== undefined);
  const small = ['config.json', ...(await present([...TOKENIZER_FILES, ...OPTIONAL_FILES]))];
  if (!small.includes('tokenizer.json') && !(small.includes('vocab.json') && small.includes('merges.txt'))) {
    throw new CheckpointError(
      repo,
      `has no tokenizer files at ${revision}`,
      'an OPT model needs vocab.json + merges.txt, or tokenizer.json',
    );
  }
  for (const f of small) await ensure(f);

  // Weights already complete in this snapshot (say pytorch_model.bin left by an older transformers) are kept.
  const localHas = (f: string) => isFile(pointer(f));
  const localRead = (f: string) => readFile(pointer(f), 'utf8').catch(() => undefined);
  let weights = await planWeights(localHas, localRead).catch(() => undefined);
  if (weights && !(await Promise.all(weights.shards.map(localHas))).every(Boolean)) weights = undefined;
  if (!weights) {
    const chosen = await planWeights(remote.has, async () => undefined);
    if (!chosen) throw new CheckpointError(repo, `has no OPT weights at ${revision}`, `expected one of ${WEIGHTS.join(', ')}`);
    await ensure(chosen.file);
    const shards = chosen.file.endsWith('.index.json') ? shardsOf((await localRead(chosen.file)) ?? '', `${repo}/${chosen.file}`) : [];
    for (const s of shards) await ensure(s);
  }
  return cache.snapshotDir(commit);
}

// ---- errors the user can act on ----

function notCached(repo: string, revision: string, cache: RepoCache, snap: Snapshot | undefined, hint: string): CheckpointError {
  const problem = snap
    ? `the cached snapshot for revision ${revision} (${snap.dir}) is incomplete: it lacks ${snap.missing.join(', ')}`
    : `is not in the Hugging Face cache (${cache.dir}, revision ${revision})`;
  return new CheckpointError(repo, problem, hint);
}

function toCheckpointError(err: HubRequestError, repo: string, revision: string, ctx: HubContext, cache: RepoCache): CheckpointError {
  const where = `${ctx.endpoint}/${repo}`;
  switch (err.kind) {
    case 'auth':
    case 'gated':
      return new CheckpointError(
        repo,
        `the Hub refused access (HTTP ${err.status}): the model is gated or private${err.status === 401 ? ', or does not exist' : ''}`,
        ctx.token
          ? `HF_TOKEN is set but not accepted for this model: check the token can read it and that its account accepted the conditions on ${where}`
          : `set HF_TOKEN to a Hugging Face access token that can read it (for a gated model, accept its conditions on ${where} first)`,
      );
    case 'not-found':
      return new CheckpointError(
        repo,
        err.errorCode === 'EntryNotFound'
          ? `${err.message} (${err.url})`
          : `no such model (or revision "${revision}") on the Hub at ${ctx.endpoint}`,
        `check the id and revision; "${repo}" is not a local folder either`,
      );
    case 'server':
      return new CheckpointError(
        repo,
        `the Hub answered HTTP ${err.status} for ${err.url}, also after retries`,
        'the Hub may be down: try again later, or set HF_HUB_OFFLINE=1 to use a model already in the cache',
      );
    case 'network':
      return new CheckpointError(
        repo,
        `${err.message}, and the model is not complete in the cache (${cache.dir})`,
        'check the network connection and HF_ENDPOINT; to work without network, set HF_HUB_OFFLINE=1 and use a model already in the cache',
      );
    case 'integrity':
      return new CheckpointError(
        repo,
        err.message,
        'run again to download it afresh; if it persists, the Hub or a proxy is sending bad data',
      );
    default:
      return new CheckpointError(repo, `unexpected answer from the Hub: ${err.message} (${err.url})`, 'check HF_ENDPOINT');
  }
}
