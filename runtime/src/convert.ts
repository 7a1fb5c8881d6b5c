// Converts a Hugging Face OPT checkpoint into the runtime's ONNX decoder and caches the result
// on disk, keyed by the checkpoint's full content and the graph options, so only the first load of
// a model pays for conversion. Weights stream through one tensor at a time.
//
// The cache is shared by every process on the machine (the editor, `opt` commands, several
// editors) and may be shared between machines, so it only ever grows by atomic steps:
// - An entry (`onnx/<key>`, or `onnx/<key>.<n>` when an earlier one was damaged) is built in a
//   temporary folder and published by renaming it into place. A folder cannot be renamed onto a
//   non-empty one, so of two converters the first wins and the other discards its copy and uses the
//   winner's. A published entry is never removed or replaced: a reader can never lose its files,
//   and since the key covers everything the graph is made of, a rebuild (`force`) is the same
//   graph and is discarded too. Only a damaged entry (files missing or cut short, which no load can
//   use) is removed, and only once a newer intact one exists, so an entry name is never reused.
// - A lock file (`onnx/<key>.lock`, made with link(2), which fails when it exists) lets one
//   process convert while the others on the machine wait for its entry. It saves work only:
//   correctness rests on the publish step, so a lock broken by a race costs a duplicate conversion.
// - A temporary folder names its host and pid; leftovers of dead processes on this host are
//   removed by the next call. Another machine's are left alone: its pids mean nothing here.

import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, realpath, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { basename, join } from 'node:path';
import { type OptConfig, readOptConfig } from './config.js';
import { type OptWeights, openOptWeights } from './checkpoint/optWeights.js';
import { CheckpointError } from './errors.js';
import { snapshotBlobSha256 } from './hub/hubCache.js';
import { ExternalDataFile, GraphBuilder } from './onnx/graphBuilder.js';
import {
  type OptGraphOptions,
  DEFAULT_GRAPH_OPTIONS,
  OPSETS,
  buildOptGraph,
  defaultBlockSize,
  kvCacheLayout,
  kvElemType,
} from './onnx/optGraph.js';

/** Bump when the graph builder changes what it emits, so stale cached models are rebuilt. */
const GRAPH_FORMAT_VERSION = 5;
/** Bump when what the key covers changes (2: full content of every weight file, canonical options). */
const KEY_SCHEME = 2;
const MODEL_FILE = 'model.onnx';
const DATA_FILE = `${MODEL_FILE}.data`;
/** A lock not refreshed for this long belongs to a dead or hung converter (the holder touches it every LOCK_REFRESH_MS). */
const LOCK_STALE_MS = 60_000;
const LOCK_REFRESH_MS = 5_000;
const LOCK_POLL_MS = 100;
/**
 * A file whose ctime is this close to the moment it was hashed may still change within the same
 * timestamp tick (1 s on some file systems), unseen by stat: its hash is not memoized (git's
 * "racily clean" rule).
 */
const RACY_MS = 2_000;
/** Temporary folders of the format before hosts were named are swept once nothing in them changed for this long. */
const LEGACY_TMP_QUIET_MS = 24 * 3600_000;

const ENTRY = /^([0-9a-f]{32})(?:\.(\d+))?$/;
const TMP = /^([0-9a-f]{32})\.tmp\.(.+)\.(\d+)\.(\d+)$/;
const LEGACY_TMP = /^[0-9a-f]{32}\.tmp-(\d+)-(\d+)$/;
const LOCK = /^([0-9a-f]{32})\.lock$/;
/** A lock's content before it is linked into place: `<key>.lock.<host>.<pid>.<nonce>`. */
const LOCK_TMP = /^([0-9a-f]{32})\.lock\.(.+)\.(\d+)\.[0-9a-f]{16}$/;
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

export function defaultCacheDir(): string {
  if (process.env.OPT_COMPLETE_CACHE) return process.env.OPT_COMPLETE_CACHE;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'opt-complete');
}

export interface ConvertResult {
  /** Path of the ONNX model (its weights in `model.onnx.data` beside it). */
  modelPath: string;
  /** Whether this call built it (false: it came from the cache). */
  converted: boolean;
  /** Seconds spent converting (0 when cached). */
  seconds: number;
}

export interface ConvertOptions extends Partial<OptGraphOptions> {
  cacheDir?: string;
  /**
   * Convert even if a cached model exists (to time a conversion). The cached entry stays the one
   * loads use: it is the same graph (same key), and replacing it could pull files from under a reader.
   */
  force?: boolean;
}

export async function convertCheckpoint(dir: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const graphOptions = canonicalGraphOptions({ ...DEFAULT_GRAPH_OPTIONS, ...pickGraphOptions(options) });
  const config = await readOptConfig(dir);
  const weights = await openOptWeights(dir, config);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const onnxDir = join(cacheDir, 'onnx');
  await mkdir(onnxDir, { recursive: true });
  await sweepLeftovers(onnxDir);
  const before = await Promise.all(weights.files.map(fileIdentity));
  const key = await cacheKey(dir, weights.files, graphOptions, cacheDir);

  const cached = async () => (options.force ? undefined : (await lookup(onnxDir, key)).intact);
  let entry = await cached();
  if (entry) return { modelPath: join(entry, MODEL_FILE), converted: false, seconds: 0 };
  const lock = await acquireLock(onnxDir, key, cached);
  if (typeof lock === 'string') return { modelPath: join(lock, MODEL_FILE), converted: false, seconds: 0 };
  try {
    entry = await cached(); // published while we took the lock
    if (entry) return { modelPath: join(entry, MODEL_FILE), converted: false, seconds: 0 };
    await sweepLeftovers(onnxDir); // a converter that died holding the lock left its folder
    const started = performance.now();
    const tmp = join(onnxDir, `${key}.tmp.${hostTag()}.${process.pid}.${Date.now()}`);
    await mkdir(tmp);
    try {
      await writeOnnxModel(dir, join(tmp, MODEL_FILE), graphOptions, { config, weights });
      const after = await Promise.all(weights.files.map(fileIdentity));
      const changed = weights.files.find((_, i) => after[i] !== before[i]);
      if (changed) throw new CheckpointError(changed, 'changed while it was being converted', 'run again once the checkpoint is written');
      const outputs = Object.fromEntries(
        await Promise.all([MODEL_FILE, DATA_FILE].map(async (f) => [f, (await stat(join(tmp, f))).size] as const)),
      );
      const meta = {
        key,
        source: dir,
        files: weights.files.map((f) => basename(f)),
        options: graphOptions,
        formatVersion: GRAPH_FORMAT_VERSION,
        outputs,
      };
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 2));
      entry = await publish(onnxDir, key, tmp);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return { modelPath: join(entry, MODEL_FILE), converted: true, seconds: (performance.now() - started) / 1000 };
  } finally {
    await lock.release();
  }
}

/**
 * Writes the decoder of the checkpoint in `dir` to `modelFile`, its weights streamed into
 * `<modelFile>.data` (or `dataFile`), e.g. `onnx/model.onnx` + `onnx/model.onnx_data` for
 * transformers.js. Not cached; `convertCheckpoint` is the cached entry point.
 */
export async function writeOnnxModel(
  dir: string,
  modelFile: string,
  graphOptions: OptGraphOptions,
  opened?: { config: OptConfig; weights: OptWeights },
  dataFile = `${modelFile}.data`,
): Promise<void> {
  const config = opened?.config ?? (await readOptConfig(dir));
  const weights = opened?.weights ?? (await openOptWeights(dir, config));
  const data = await ExternalDataFile.create(dataFile);
  const g = new GraphBuilder(data);
  try {
    await buildOptGraph(g, config, weights, graphOptions);
  } finally {
    await data.close();
  }
  await writeFile(modelFile, g.encode('opt_decoder', OPSETS, metadata(dir, config, graphOptions)));
}

function pickGraphOptions(o: ConvertOptions): Partial<OptGraphOptions> {
  const { cacheDir: _c, force: _f, ...rest } = o;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

/**
 * The options with every default spelled out, in a fixed order: options that build the same graph
 * (kvCache left out or given as the layout it defaults to, say) give the same cache key.
 */
export function canonicalGraphOptions(o: OptGraphOptions): OptGraphOptions {
  const output = o.output ?? 'logits';
  return {
    dtype: o.dtype,
    fused: o.fused,
    logitsToKeepInput: o.logitsToKeepInput,
    blockSize: o.blockSize ?? defaultBlockSize(o.dtype),
    accuracyLevel: o.accuracyLevel,
    quantizeEmbedding: o.quantizeEmbedding,
    kvCache: kvCacheLayout(o),
    kvDtype: kvElemType(o) === 'float16' ? 'fp16' : 'fp32',
    output,
    allHiddenStates: output === 'hidden' && (o.allHiddenStates ?? false),
  };
}

function metadata(dir: string, c: OptConfig, o: OptGraphOptions): Record<string, string> {
  return {
    source: basename(dir),
    dtype: o.dtype,
    fused: String(o.fused),
    kv_cache: kvCacheLayout(o),
    output: o.output ?? 'logits',
    architecture: c.architectures[0]!,
  };
}

// ---- the key: what the graph is made of ----

/**
 * sha256 over the key scheme, the graph format version, the canonical graph options, config.json
 * and, for each weight file, its name and the sha256 of its whole content, so any rewrite of the
 * weights (same size, mtime put back or not) gives another key.
 */
async function cacheKey(dir: string, files: string[], o: OptGraphOptions, cacheDir: string): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify({ k: KEY_SCHEME, v: GRAPH_FORMAT_VERSION, o }));
  h.update(await readFile(join(dir, 'config.json')));
  for (const file of files) h.update(`\n${basename(file)}:${await contentSha256(dir, file, cacheDir)}`);
  return h.digest('hex').slice(0, 32);
}

/** What stat says of a file that any write, replacement or utimes changes: ctime is set by the kernel on each. */
async function fileIdentity(file: string): Promise<string> {
  const s = await stat(file, { bigint: true });
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/**
 * The sha256 of a weight file: a Hub snapshot's from its blob's name; else hashed in full (about
 * 1 GiB/s in memory on a 2-core x86 with SHA-NI, 0.3-0.4 GiB/s from the page cache under load:
 * sha1 is barely faster, md5 and blake2b slower), memoized in the cache under the file's identity
 * (device, inode, size, mtime and ctime in ns) so an unchanged folder is hashed once.
 */
async function contentSha256(dir: string, file: string, cacheDir: string): Promise<string> {
  const fromHub = await snapshotBlobSha256(dir, file);
  if (fromHub) return fromHub;
  const memoFile = join(
    cacheDir,
    'fingerprints',
    `${createHash('sha256')
      .update(await realpath(file))
      .digest('hex')
      .slice(0, 32)}.json`,
  );
  const identity = await fileIdentity(file);
  const memo = await readFile(memoFile, 'utf8').then(
    (t) => JSON.parse(t) as { identity?: string; sha256?: string },
    () => undefined,
  );
  if (memo?.identity === identity && typeof memo.sha256 === 'string') return memo.sha256;
  const sha256 = await hashFile(file);
  const after = await stat(file, { bigint: true });
  if ((await fileIdentity(file)) !== identity)
    throw new CheckpointError(file, 'changed while it was being read', 'run again once the checkpoint is written');
  if (Date.now() - Number(after.ctimeNs / 1_000_000n) > RACY_MS) {
    await mkdir(join(cacheDir, 'fingerprints'), { recursive: true });
    const tmp = `${memoFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify({ file: await realpath(file), identity, sha256 }));
    await rename(tmp, memoFile).catch(() => rm(tmp, { force: true }));
  }
  return sha256;
}

async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

// ---- entries: found, published, never replaced ----

interface Lookup {
  /** The newest intact entry of the key. */
  intact?: string;
  /** The highest generation of any entry of the key (-1: none), intact or not: the next publishes above it. */
  maxGeneration: number;
  damaged: { path: string; generation: number }[];
}

async function lookup(onnxDir: string, key: string): Promise<Lookup> {
  const found: { name: string; generation: number }[] = [];
  for (const name of await readdir(onnxDir)) {
    const m = ENTRY.exec(name);
    if (m?.[1] === key) found.push({ name, generation: m[2] === undefined ? 0 : Number(m[2]) });
  }
  found.sort((a, b) => b.generation - a.generation);
  const result: Lookup = { maxGeneration: found[0]?.generation ?? -1, damaged: [] };
  for (const e of found) {
    const path = join(onnxDir, e.name);
    const intact = await isIntact(path);
    if (intact && !result.intact) result.intact = path;
    else if (!intact) result.damaged.push({ path, generation: e.generation });
  }
  return result;
}

/** Published (meta.json is written last, inside the temporary folder) and its files still whole. */
async function isIntact(entry: string): Promise<boolean> {
  try {
    const meta = JSON.parse(await readFile(join(entry, 'meta.json'), 'utf8')) as { outputs?: Record<string, number> };
    const outputs = Object.entries(meta.outputs ?? {});
    if (outputs.length === 0) return false;
    for (const [file, size] of outputs) if ((await stat(join(entry, file))).size !== size) return false;
    return true;
  } catch {
    return false;
  }
}

/**
 * Renames `tmp` into place as the key's entry, unless an intact one exists (published by another
 * process meanwhile, or kept despite `force`): then `tmp` is dropped and that one returned.
 */
async function publish(onnxDir: string, key: string, tmp: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const found = await lookup(onnxDir, key);
    if (found.intact) {
      await rm(tmp, { recursive: true, force: true });
      return found.intact;
    }
    const generation = found.maxGeneration + 1;
    const target = join(onnxDir, generation === 0 ? key : `${key}.${generation}`);
    try {
      await rename(tmp, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Taken by another publisher between lookup and rename: look again. Windows says so with
      // EPERM/EACCES, which elsewhere mean a real permission problem (thrown at once).
      const taken = code === 'ENOTEMPTY' || code === 'EEXIST' || (process.platform === 'win32' && (code === 'EPERM' || code === 'EACCES'));
      if (attempt < 100 && taken) {
        await new Promise((r) => setTimeout(r, Math.min(200, 5 * attempt))); // a scanner holding a file on Windows lets go
        continue;
      }
      throw err;
    }
    // Damaged entries below an intact one can be served to no one, and their names are never reused.
    for (const d of found.damaged) await rm(d.path, { recursive: true, force: true }).catch(() => undefined);
    return target;
  }
}

// ---- the conversion lock: one converter per key on a machine, the others wait ----

interface LockOwner {
  host: string;
  pid: number;
  nonce: string;
}

function hostTag(): string {
  return hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** A lock whose owner died on this host, or that nobody refreshed for LOCK_STALE_MS (a hung or dead converter, maybe elsewhere). */
async function isStaleLock(path: string): Promise<boolean> {
  const [text, s] = await Promise.all([readFile(path, 'utf8').catch(() => undefined), stat(path).catch(() => undefined)]);
  if (text === undefined || s === undefined) return false; // gone: not ours to judge
  let owner: Partial<LockOwner> = {};
  try {
    owner = JSON.parse(text) as LockOwner;
  } catch {
    // unreadable: judged by age alone
  }
  if (owner.host === hostTag() && typeof owner.pid === 'number' && !isAlive(owner.pid)) return true;
  return Date.now() - s.mtimeMs > LOCK_STALE_MS;
}

/**
 * Takes `<key>.lock`, or returns the entry another process published while we waited for its
 * lock. The lock file is written under a temporary name and linked into place, so it is never seen
 * empty; link fails when the lock exists.
 */
async function acquireLock(
  onnxDir: string,
  key: string,
  published: () => Promise<string | undefined>,
): Promise<{ release(): Promise<void> } | string> {
  const path = join(onnxDir, `${key}.lock`);
  const owner: LockOwner = { host: hostTag(), pid: process.pid, nonce: randomBytes(8).toString('hex') };
  const text = JSON.stringify(owner);
  for (;;) {
    const tmp = `${path}.${owner.host}.${owner.pid}.${owner.nonce}`;
    await writeFile(tmp, text);
    const exists = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') return false;
      throw err;
    };
    const taken = await link(tmp, path)
      .then(
        () => true,
        // A file system without hard links (exFAT, some network mounts): an exclusive create, which a
        // reader may see empty for a moment (an unreadable owner counts as live until the lock is old).
        (err: NodeJS.ErrnoException) =>
          NO_HARD_LINKS.has(err.code ?? '') ? writeFile(path, text, { flag: 'wx' }).then(() => true, exists) : exists(err),
      )
      .finally(() => unlink(tmp).catch(() => undefined));
    if (taken) {
      const refresh = setInterval(() => void utimes(path, new Date(), new Date()).catch(() => undefined), LOCK_REFRESH_MS);
      refresh.unref();
      return {
        async release() {
          clearInterval(refresh);
          // Only our own: a waiter may have judged us stale and taken the lock over.
          if ((await readFile(path, 'utf8').catch(() => undefined)) === text) await unlink(path).catch(() => undefined);
        },
      };
    }
    const entry = await published();
    if (entry) return entry;
    // Two waiters may both find a lock stale, and the second then removes the first's new lock:
    // both convert, the first to publish wins, and nothing worse than the duplicate work happens.
    if (await isStaleLock(path)) await unlink(path).catch(() => undefined);
    else await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}

// ---- leftovers ----

/**
 * Removes what dead converters on this host left: their temporary folders and locks. A folder of
 * a live process, or of another host (whose pids cannot be checked from here), is kept.
 */
async function sweepLeftovers(onnxDir: string): Promise<void> {
  const host = hostTag();
  for (const name of await readdir(onnxDir).catch(() => [] as string[])) {
    const path = join(onnxDir, name);
    const tmp = TMP.exec(name);
    if (tmp) {
      const pid = Number(tmp[3]);
      if (tmp[2] === host && pid !== process.pid && !isAlive(pid)) await rm(path, { recursive: true, force: true }).catch(() => undefined);
      continue;
    }
    const legacy = LEGACY_TMP.exec(name);
    if (legacy) {
      // No host in the name (an older version): removed only when no process here has its pid and
      // nothing in it changed for a day, so a converter on another machine is not cut short.
      if (!isAlive(Number(legacy[1])) && (await quietFor(path, LEGACY_TMP_QUIET_MS)))
        await rm(path, { recursive: true, force: true }).catch(() => undefined);
      continue;
    }
    const lockTmp = LOCK_TMP.exec(name);
    if (lockTmp) {
      if (lockTmp[2] === host && Number(lockTmp[3]) !== process.pid && !isAlive(Number(lockTmp[3])))
        await unlink(path).catch(() => undefined);
      continue;
    }
    if (LOCK.test(name) && (await isStaleLock(path))) {
      const owner = await readFile(path, 'utf8').then(
        (t) => JSON.parse(t) as Partial<LockOwner>,
        () => undefined,
      );
      // Only this host's dead owners here; a waiter judges other hosts' locks by age.
      if (owner?.host === host) await unlink(path).catch(() => undefined);
    }
  }
}

async function quietFor(folder: string, ms: number): Promise<boolean> {
  const names = await readdir(folder).catch(() => [] as string[]);
  const times = await Promise.all(
    [folder, ...names.map((n) => join(folder, n))].map((p) =>
      stat(p).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    ),
  );
  return Date.now() - Math.max(...times) > ms;
}
