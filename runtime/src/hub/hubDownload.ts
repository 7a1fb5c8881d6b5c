// HTTP side of the Hub cache: the models API, HEAD metadata on resolve URLs and resumable blob
// downloads, following huggingface_hub's protocol (file_download.py: get_hf_file_metadata, http_get,
// _download_to_tmp_and_move) so blobs land under the names Python expects, verified before they do.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface HubContext {
  endpoint: string;
  token?: string;
  fetch: typeof fetch;
  signal?: AbortSignal;
}

export type HubFailure = 'auth' | 'gated' | 'not-found' | 'server' | 'network' | 'bad-response' | 'integrity';

/** What went wrong talking to the Hub; resolveModel turns it into a CheckpointError with advice. */
export class HubRequestError extends Error {
  override readonly name = 'HubRequestError';
  constructor(
    readonly kind: HubFailure,
    message: string,
    readonly url: string,
    readonly status?: number,
    /** The Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). */
    readonly errorCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface FileMeta {
  commit?: string;
  /** Blob name: X-Linked-Etag (LFS sha256) or ETag (git blob sha), quotes and W/ stripped. */
  etag: string;
  size?: number;
}

export type Progress = (p: { file: string; received: number; total: number | undefined }) => void;

// _DEFAULT_RETRY_ON_STATUS_CODES in utils/_http.py.
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
export const DEFAULT_RETRIES = 3;
const BACKOFF_MS = 250;
const MAX_REDIRECTS = 10;
// No byte (or no headers) for this long means a dead connection: drop it and resume.
const STALL_MS = 30_000;
const STREAM_RETRIES = 5;
const PROGRESS_EVERY_MS = 100;

export function resolveUrl(endpoint: string, repo: string, revision: string, file: string): string {
  // hf_hub_url: the revision is quoted whole (refs/pr/1 → refs%2Fpr%2F1), the file keeps its slashes.
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

/** _normalize_etag: `W/"abc"` and `"abc"` both name the blob `abc`. */
export function normalizeEtag(etag: string | null): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;
}

interface Sent {
  res: Response;
  /** Every response in the redirect chain, the final one last. */
  chain: Response[];
}

function isAbort(ctx: HubContext): boolean {
  return ctx.signal?.aborted === true;
}

/**
 * One request with redirects followed by hand: the bearer token goes only to the origin we started
 * at (a CDN gets a signed URL, never the token), and `followAll: false` follows only relative
 * redirects (a renamed repo), stopping at the CDN one, as _httpx_follow_relative_redirects does for HEAD.
 */
async function send(
  ctx: HubContext,
  method: string,
  url: string,
  headers: Record<string, string>,
  followAll: boolean,
  stall: AbortController,
): Promise<Sent> {
  const origin = new URL(url).origin;
  const chain: Response[] = [];
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stall.signal]) : stall.signal;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    // identity: we need the real byte count, and Range offsets must mean file offsets.
    const h: Record<string, string> = { ...headers, 'accept-encoding': 'identity', 'user-agent': 'opt-complete' };
    if (ctx.token && new URL(current).origin === origin) h.authorization = `Bearer ${ctx.token}`;
    const res = await ctx.fetch(current, { method, headers: h, redirect: 'manual', signal });
    chain.push(res);
    const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
    if (!location) return { res, chain };
    if (!followAll && /^([a-z][a-z0-9+.-]*:)?\/\//i.test(location)) return { res, chain };
    const next = new URL(location, current).href;
    await res.body?.cancel().catch(() => undefined);
    current = next;
  }
  throw new HubRequestError('bad-response', `more than ${MAX_REDIRECTS} redirects`, url);
}

/** send() with 5xx/429/network retries and exponential backoff (http_backoff), before any body is read. */
async function request(
  ctx: HubContext,
  method: string,
  url: string,
  opts: { headers?: Record<string, string>; followAll: boolean; retries: number },
): Promise<Sent & { stall: AbortController }> {
  for (let attempt = 0; ; attempt++) {
    const stall = new AbortController();
    const timer = setTimeout(() => stall.abort(new Error(`no answer in ${STALL_MS / 1000} s`)), STALL_MS);
    let sent: Sent;
    try {
      sent = await send(ctx, method, url, opts.headers ?? {}, opts.followAll, stall);
    } catch (err) {
      if (isAbort(ctx)) throw ctx.signal!.reason;
      if (err instanceof HubRequestError) throw err;
      if (attempt < opts.retries) {
        await pause(ctx, BACKOFF_MS * 2 ** attempt);
        continue;
      }
      throw new HubRequestError(
        'network',
        `could not reach ${new URL(url).origin} (${describeNetworkError(err)})`,
        url,
        undefined,
        undefined,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
    const { status } = sent.res;
    if (RETRY_STATUS.has(status) && attempt < opts.retries) {
      await sent.res.body?.cancel().catch(() => undefined);
      const after = Number(sent.res.headers.get('retry-after'));
      const wait = Number.isFinite(after) && after > 0 ? Math.min(after * 1000, 10_000) : BACKOFF_MS * 2 ** attempt;
      await pause(ctx, wait);
      continue;
    }
    return { ...sent, stall };
  }
}

/** A backoff wait that an abort ends with the caller's own reason. */
async function pause(ctx: HubContext, ms: number): Promise<void> {
  await sleep(ms, undefined, { signal: ctx.signal }).catch((err: unknown) => {
    throw isAbort(ctx) ? ctx.signal!.reason : err;
  });
}

function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}

/** hf_raise_for_status, reduced to what a model download needs to tell apart. */
async function failOn(res: Response, url: string): Promise<void> {
  const { status } = res;
  if (status < 400) return;
  await res.body?.cancel().catch(() => undefined);
  const code = res.headers.get('x-error-code') ?? undefined;
  const message = res.headers.get('x-error-message') ?? `HTTP ${status}`;
  const kind: HubFailure =
    status === 401
      ? 'auth'
      : status === 403
        ? 'gated'
        : status === 404
          ? 'not-found'
          : status >= 500 || RETRY_STATUS.has(status)
            ? 'server'
            : 'bad-response';
  throw new HubRequestError(kind, message, url, status, code);
}

/** GET {endpoint}/api/models/{repo}/revision/{revision}: the commit and the file list in one call. */
export async function modelInfo(
  ctx: HubContext,
  repo: string,
  revision: string,
  retries: number,
): Promise<{ sha: string; files: Set<string> }> {
  const url = `${ctx.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  const { res } = await request(ctx, 'GET', url, { followAll: false, retries });
  await failOn(res, url);
  const body = (await res.json().catch(() => undefined)) as { sha?: unknown; siblings?: Array<{ rfilename?: unknown }> } | undefined;
  if (typeof body?.sha !== 'string' || !Array.isArray(body.siblings)) {
    throw new HubRequestError('bad-response', 'the models API answered without sha and siblings', url, res.status);
  }
  return { sha: body.sha, files: new Set(body.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string')) };
}

/** HEAD on the resolve URL (get_hf_file_metadata): commit, blob name and size, read from the Hub's own answer. */
export async function fileMeta(ctx: HubContext, repo: string, revision: string, file: string, retries: number): Promise<FileMeta> {
  const url = resolveUrl(ctx.endpoint, repo, revision, file);
  const { res, chain } = await request(ctx, 'HEAD', url, { followAll: false, retries });
  await failOn(res, url);
  // The LFS redirect carries X-Linked-*; a response after further hops might not.
  const hub = [...chain].reverse().find((r) => r.headers.has('x-repo-commit') || r.headers.has('x-linked-etag')) ?? res;
  const etag = normalizeEtag(hub.headers.get('x-linked-etag') ?? hub.headers.get('etag'));
  if (!etag) throw new HubRequestError('bad-response', `no ETag for ${file}: cannot name its blob`, url, res.status);
  const isRedirect = hub.status >= 300 && hub.status < 400;
  const size = Number(hub.headers.get('x-linked-size') ?? (isRedirect ? res : hub).headers.get('content-length') ?? NaN);
  return { commit: hub.headers.get('x-repo-commit') ?? undefined, etag, size: Number.isSafeInteger(size) && size >= 0 ? size : undefined };
}

export interface BlobDownload {
  url: string;
  /** Final blob path; bytes go to `${blob}.incomplete` first (huggingface_hub's name, so either side resumes it). */
  blob: string;
  meta: FileMeta;
  file: string;
  onProgress?: Progress;
}

/** The connection broke or ended early mid-body: worth resuming (file system errors are not). */
class StreamBreak extends Error {}

/** Length of a file, or undefined when there is none (an empty file is not a missing one). */
async function sizeOf(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.size,
    () => undefined,
  );
}

/** Downloads to blob.incomplete, resuming with Range, then verifies and renames; never leaves a bad blob. */
export async function downloadBlob(ctx: HubContext, d: BlobDownload): Promise<void> {
  const partial = `${d.blob}.incomplete`;
  const { size } = d.meta;
  await mkdir(dirname(d.blob), { recursive: true });
  for (let failures = 0; ;) {
    let have = await sizeOf(partial);
    if (size !== undefined && have !== undefined && have > size) {
      await rm(partial, { force: true });
      have = undefined;
    }
    if (size !== undefined && have === size) break;
    const before = have ?? 0;
    try {
      const ended = await fetchInto(ctx, d, partial, have ?? 0);
      // Too long is left to verify(); too short is a connection that closed early: resume.
      if (size === undefined || ended >= size) break;
      throw new StreamBreak(`the body ended after ${ended} of ${size} bytes`);
    } catch (err) {
      if (isAbort(ctx)) throw ctx.signal!.reason;
      if (!(err instanceof StreamBreak)) throw err;
      // http_get: a connection dropped mid-body is resumed, a few times unless bytes keep coming.
      if (((await sizeOf(partial)) ?? 0) > before) failures = 0;
      if (++failures > STREAM_RETRIES) {
        throw new HubRequestError(
          'network',
          `the download of ${d.file} kept breaking off (${describeNetworkError(err)}); the partial file is kept for the next try`,
          d.url,
          undefined,
          undefined,
          { cause: err },
        );
      }
      await pause(ctx, BACKOFF_MS * 2 ** Math.min(failures - 1, 4));
    }
  }
  await verify(partial, d);
  await rename(partial, d.blob);
}

/** One GET into the partial file; returns its length after the body ended. */
async function fetchInto(ctx: HubContext, d: BlobDownload, partial: string, have: number): Promise<number> {
  const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
  const { res, stall } = await request(ctx, 'GET', d.url, { headers, followAll: true, retries: DEFAULT_RETRIES });
  if (res.status === 416) {
    // Our partial file does not fit the file any more: start over.
    await res.body?.cancel().catch(() => undefined);
    await rm(partial, { force: true });
    throw new StreamBreak('range not satisfiable');
  }
  await failOn(res, d.url);
  let offset = 0;
  if (have > 0 && res.status === 206) {
    const start = Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]);
    if (start !== have) {
      await res.body?.cancel().catch(() => undefined);
      await rm(partial, { force: true });
      throw new StreamBreak(`server resumed at byte ${start}, not ${have}`);
    }
    offset = have;
  }
  // 200 after a Range request: the server sent the whole file, so the partial file restarts (http_get does the same).
  const total = d.meta.size ?? (Number(res.headers.get('content-length')) + offset || undefined);
  const out = await open(partial, offset > 0 ? 'a' : 'w');
  let received = offset;
  let last = 0;
  const report = (force: boolean) => {
    const now = Date.now();
    if (!d.onProgress || (!force && now - last < PROGRESS_EVERY_MS)) return;
    last = now;
    d.onProgress({ file: d.file, received, total });
  };
  let timer = setTimeout(() => stall.abort(new Error('stalled')), STALL_MS);
  try {
    report(true);
    const reader = res.body?.getReader();
    try {
      for (;;) {
        let step: { done: boolean; value?: Uint8Array } | undefined;
        try {
          step = await reader?.read();
        } catch (err) {
          throw new StreamBreak(describeNetworkError(err), { cause: err });
        }
        if (!step || step.done || !step.value) break;
        clearTimeout(timer);
        timer = setTimeout(() => stall.abort(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS);
        await out.write(step.value);
        received += step.value.byteLength;
        report(false);
      }
    } finally {
      // Frees the connection when we stop early (disk error); a no-op after the end.
      await reader?.cancel().catch(() => undefined);
    }
    report(true);
  } finally {
    clearTimeout(timer);
    await out.close();
  }
  return received;
}

/** Size, then content: sha256 for LFS etags (64 hex), the git blob sha1 for small files (40 hex). */
async function verify(partial: string, d: BlobDownload): Promise<void> {
  const actualSize = (await sizeOf(partial)) ?? 0;
  const { etag, size } = d.meta;
  let problem: string | undefined;
  if (size !== undefined && actualSize !== size) {
    problem = `is ${actualSize} bytes where the Hub announced ${size}`;
  } else if (/^[0-9a-f]{64}$/.test(etag) || /^[0-9a-f]{40}$/.test(etag)) {
    const lfs = etag.length === 64;
    const hash = createHash(lfs ? 'sha256' : 'sha1');
    if (!lfs) hash.update(`blob ${actualSize}\0`);
    for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
    const digest = hash.digest('hex');
    if (digest !== etag) problem = `has ${lfs ? 'sha256' : 'git blob sha'} ${digest} where the Hub announced ${etag}`;
  }
  if (problem) {
    await rm(partial, { force: true });
    throw new HubRequestError('integrity', `the downloaded ${d.file} ${problem}; it was deleted`, d.url);
  }
}
