// The Hugging Face cache layout, byte for byte as huggingface_hub writes it (constants.py and
// file_download.py), so a model fetched by Python transformers is found here and one fetched here
// loads in Python: <cache>/models--org--name/{blobs/<etag>, refs/<revision>, snapshots/<commit>/<file>}.
import { randomBytes } from 'node:crypto';
import { copyFile, lstat, mkdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CheckpointError } from '../errors.js';

// huggingface_hub's ENV_VARS_TRUE_VALUES, compared upper-cased.
const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

export function envFlag(env: NodeJS.ProcessEnv, ...names: string[]): boolean {
  return names.some((n) => TRUE_VALUES.has((env[n] ?? '').toUpperCase()));
}

/** Python reads these paths through expanduser + expandvars; do the same so one setting serves both. */
function expand(path: string, env: NodeJS.ProcessEnv): string {
  const home = env.HOME ?? env.USERPROFILE ?? homedir();
  const withHome = path === '~' || path.startsWith('~/') || path.startsWith(`~${sep}`) ? home + path.slice(1) : path;
  return withHome.replace(/\$(\w+)|\$\{(\w+)\}/g, (whole, a?: string, b?: string) => env[(a ?? b)!] ?? whole);
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (constants.py). */
export function hfHome(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CACHE_HOME || join(env.HOME ?? env.USERPROFILE ?? homedir(), '.cache');
  return expand(env.HF_HOME || join(xdg, 'huggingface'), env);
}

/** HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub (constants.py). */
export function hubCacheDir(env: NodeJS.ProcessEnv): string {
  return expand(env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome(env), 'hub'), env);
}

/** `models--org--name`: repo_folder_name() in file_download.py. */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/** A repo-relative file name we may write under snapshots/: no absolute paths, no `..` (see _validate_relative_filename). */
export function checkRelativeFile(file: string): string {
  const parts = file.split('/');
  if (!file || isAbsolute(file) || file.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new CheckpointError(JSON.stringify(file), 'is not a safe file name inside a repository snapshot (absolute, empty part, or ..)');
  }
  return file;
}

/**
 * The blobs/ folder of the repository whose snapshot folder `dir` is
 * (`<cache>/models--org--name/snapshots/<commit>`), where its files' links point; else undefined.
 */
export function blobsDirOfSnapshot(dir: string): string | undefined {
  const snapshots = dirname(resolve(dir));
  const repo = dirname(snapshots);
  return basename(snapshots) === 'snapshots' && basename(repo).startsWith('models--') ? join(repo, 'blobs') : undefined;
}

/**
 * The sha256 of a weight file in a snapshot folder, read off the name of the blob its link points
 * at: huggingface_hub names an LFS blob by its sha256 (checked on download here, hubDownload.ts),
 * and blobs are never rewritten, only added. Undefined for anything else (a folder outside the
 * cache, a copied file, a small file named by its git sha1): the caller hashes those itself.
 */
export async function snapshotBlobSha256(dir: string, file: string): Promise<string | undefined> {
  const blobs = blobsDirOfSnapshot(dir);
  if (
    !blobs ||
    !(await lstat(file).then(
      (s) => s.isSymbolicLink(),
      () => false,
    ))
  )
    return undefined;
  const [real, blobsReal] = await Promise.all([realpath(file), realpath(blobs)]).catch(() => [undefined, undefined]);
  if (real === undefined || dirname(real) !== blobsReal) return undefined;
  return /^[0-9a-f]{64}$/.test(basename(real)) ? basename(real) : undefined;
}

export class RepoCache {
  readonly dir: string;
  constructor(
    cacheDir: string,
    readonly repoId: string,
  ) {
    this.dir = join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    if (!/^[\w.-]+$/.test(etag) || etag.startsWith('.'))
      throw new CheckpointError(
        this.repoId,
        `the Hub gave the ETag ${JSON.stringify(etag)}, which cannot name a blob file`,
        'check HF_ENDPOINT',
      );
    return join(this.dir, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return join(this.dir, 'snapshots', commit);
  }

  pointerPath(commit: string, file: string): string {
    return join(this.snapshotDir(commit), ...checkRelativeFile(file).split('/'));
  }

  /** The commit a revision stands for locally: itself if it is a full hash, else refs/<revision>. */
  async commitFor(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    const ref = await readFile(join(this.dir, 'refs', ...checkRelativeFile(revision).split('/')), 'utf8').catch(() => undefined);
    const commit = ref?.trim();
    return commit && COMMIT_HASH.test(commit) ? commit : undefined;
  }

  /** Records revision → commit the way _cache_commit_hash_for_specific_revision does: only when it changed, atomically. */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = join(this.dir, 'refs', ...checkRelativeFile(revision).split('/'));
    if ((await readFile(path, 'utf8').catch(() => undefined)) === commit) return;
    await mkdir(dirname(path), { recursive: true });
    const tmp = tmpName(path);
    await writeFile(tmp, commit); // no trailing newline: Python writes the bare hash
    await rename(tmp, path);
  }

  /**
   * Points snapshots/<commit>/<file> at the blob with a relative link (survives moving the cache, as
   * _create_symlink argues); where links are impossible or disabled, moves a new blob / copies an old one.
   */
  async link(blob: string, pointer: string, newBlob: boolean, env: NodeJS.ProcessEnv): Promise<void> {
    await mkdir(dirname(pointer), { recursive: true });
    if (!envFlag(env, 'HF_HUB_DISABLE_SYMLINKS')) {
      // Made under a temporary name and renamed over: concurrent callers never see a missing or half-made pointer.
      const tmp = tmpName(pointer);
      try {
        await symlink(relative(dirname(resolve(pointer)), resolve(blob)), tmp);
        await rename(tmp, pointer);
        return;
      } catch (err) {
        await rm(tmp, { force: true });
        if (!['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
    if (newBlob) return rename(blob, pointer);
    const tmp = tmpName(pointer);
    await copyFile(blob, tmp);
    await rename(tmp, pointer);
  }
}

/** Unique per call, so concurrent writers (in this process or another) never share a temporary file. */
function tmpName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

/** True when the path exists (following links: a dangling snapshot link does not count). */
export async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
