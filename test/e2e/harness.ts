// End-to-end harness: a real VS Code (code-server 4.139.1, i.e. VS Code 1.139.1 served to a
// browser) driven through headless Debian Chromium by playwright-core.
//
// One session = one code-server in its own process group with a private user-data-dir,
// extensions-dir, XDG folders and TMPDIR, the extensions under test installed from VSIX files,
// one Chromium with a private profile, and a test-only "bridge" extension through which the test
// reads editor state and runs commands inside the extension host. Everything a session starts
// carries OPT_E2E_RUN=<id> in its environment, and is killed by that mark on stop — also when the
// test process exits early. Prerequisites come from `bash scripts/e2e-setup.sh`.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, readdirSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { packBridge } from './testExtensions.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const ARTIFACTS_DIR = join(REPO_ROOT, 'test-artifacts', 'e2e');
const CODE_SERVER_VERSION = '4.139.1';
const CHROMIUM = '/usr/bin/chromium';

// ------------------------------------------------------------------------------------------------
// Prerequisites

export interface Prereqs {
  cacheDir: string;
  node: string;
  codeServerEntry: string;
  chromium: string;
}

/** Finds what scripts/e2e-setup.sh installs; throws a clear error naming what is missing. */
export function findPrereqs(): Prereqs {
  const cacheDir = process.env.OPT_E2E_CACHE ?? join(homedir(), '.cache', 'opt-complete-e2e');
  const node = join(cacheDir, 'node24', 'node_modules', 'node', 'bin', 'node');
  const csPkg = join(cacheDir, 'code-server', 'node_modules', 'code-server');
  const codeServerEntry = join(csPkg, 'out', 'node', 'entry.js');
  const missing: string[] = [];
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (Debian package chromium)`);
  if (!existsSync(node)) missing.push(`Node 24 at ${node}`);
  if (!existsSync(codeServerEntry)) missing.push(`code-server ${CODE_SERVER_VERSION} at ${csPkg}`);
  else {
    const version = (JSON.parse(readFileSync(join(csPkg, 'package.json'), 'utf8')) as { version: string }).version;
    if (version !== CODE_SERVER_VERSION) missing.push(`code-server ${CODE_SERVER_VERSION} (found ${version} at ${csPkg})`);
  }
  if (missing.length > 0) {
    const error = new Error(
      `End-to-end prerequisites missing:\n  - ${missing.join('\n  - ')}\n` +
        `Run \`bash scripts/e2e-setup.sh\` first (installs chromium, libkrb5-dev, Node 24 and code-server ${CODE_SERVER_VERSION}` +
        ` into ${cacheDir}; set OPT_E2E_CACHE to use another folder).`,
    );
    process.stderr.write(`\n[e2e] ${error.message}\n\n`);
    throw error;
  }
  return { cacheDir, node, codeServerEntry, chromium: CHROMIUM };
}

// ------------------------------------------------------------------------------------------------
// Small utilities

/** Polls `probe` until it returns a value other than undefined/false/null, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs: number,
  intervalMs = 150,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? `: ${lastError instanceof Error ? lastError.message : String(lastError)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/** Rejects if `promise` does not settle in `ms`. */
export async function withTimeout<T>(what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

function filesUnder(dir: string, depth = 6): string[] {
  if (depth < 0 || !existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p, depth - 1));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** Pids of live processes whose environment has OPT_E2E_RUN=<runId> or whose command line names `dir`. */
export function processesOfRun(runId: string, dir: string): number[] {
  const mark = `OPT_E2E_RUN=${runId}`;
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      if (environ.split('\0').includes(mark) || cmdline.includes(dir)) pids.push(pid);
    } catch {
      /* gone or not ours */
    }
  }
  return pids;
}

/** A process's parent pid (undefined when it is gone). */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Whether a process is alive (zombies count as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A process's command line with spaces between arguments ('' when it is gone). */
export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

function killPids(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

// Sessions alive in this process, stopped (synchronously, by SIGKILL) if the process exits early.
const live = new Set<VsCodeSession>();
let exitHooksInstalled = false;
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const s of live) s.killNow(true);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const s of live) s.killNow(true);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

// ------------------------------------------------------------------------------------------------
// Scripts evaluated in the page (strings: the project's TypeScript has no DOM library)

const IDLE_JS = 'new Promise((r) => requestIdleCallback(() => r(null), { timeout: 10000 }))';

const ACTIVE_EDITOR_JS = "document.querySelector('.editor-group-container.active .monaco-editor')";

/**
 * Ghost text of the active editor. VS Code 1.139: the cursor line's part(s) are
 * `span.ghost-text-decoration` inside `.view-line`; further lines are `.ghost-text` in a view zone
 * below. `.ghost-text-hidden` marks real text hidden while a suggestion shows: not ghost text.
 * Spaces render as U+00A0.
 */
const GHOST_TEXT_JS = `(() => {
  const editor = ${ACTIVE_EDITOR_JS};
  if (!editor) return null;
  const clean = (s) => (s || '').replace(/\\u00a0/g, ' ');
  const inline = [...editor.querySelectorAll('.view-lines .view-line span.ghost-text-decoration')]
    .map((e) => clean(e.textContent)).join('');
  const lines = new Map();
  for (const el of editor.querySelectorAll('.view-zones .ghost-text')) {
    if (el.closest('.ghost-text-hidden')) continue;
    const line = el.closest('.view-line') || el;
    if (line !== el && lines.has(line)) continue;
    lines.set(line, line === el ? clean(el.textContent) : clean(line.textContent));
  }
  const top = (el) => el.getBoundingClientRect().top;
  const below = [...lines.entries()].sort((a, b) => top(a[0]) - top(b[0])).map((e) => e[1]);
  if (!inline && below.length === 0) return null;
  return { inline, below, text: [inline, ...below].join('\\n') };
})()`;

/**
 * The cursor line as the user sees it while a suggestion shows: real text and ghost text in
 * display order, without real text hidden by the suggestion (`.ghost-text-hidden`).
 */
const RENDERED_GHOST_LINE_JS = `(() => {
  const editor = ${ACTIVE_EDITOR_JS};
  const deco = editor && editor.querySelector('.view-lines .view-line span.ghost-text-decoration');
  const line = deco && deco.closest('.view-line');
  if (!line) return null;
  const clone = line.cloneNode(true);
  clone.querySelectorAll('.ghost-text-hidden').forEach((e) => e.remove());
  return (clone.textContent || '').replace(/\\u00a0/g, ' ');
})()`;

/** Rendered text of the active editor's visible lines, ghost text removed, U+00A0 as spaces. */
const VISIBLE_TEXT_JS = `(() => {
  const editor = ${ACTIVE_EDITOR_JS};
  if (!editor) return '';
  const lines = [...editor.querySelectorAll('.view-lines .view-line')];
  lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
  return lines.map((line) => {
    const clone = line.cloneNode(true);
    clone.querySelectorAll('.ghost-text-decoration, .ghost-text, .ghost-text-decoration-preview').forEach((e) => e.remove());
    return (clone.textContent || '').replace(/\\u00a0/g, ' ');
  }).join('\\n');
})()`;

// ------------------------------------------------------------------------------------------------
// The session

export interface SessionOptions {
  /** Used in artifact names. */
  name: string;
  /** VSIX files installed before start (the bridge is added automatically). */
  vsix: string[];
  /** Extension under test, publisher.name: waited for until active. */
  extensionId: string;
  /** Output channel whose log file must show `pattern` before the session counts as ready. */
  activation?: { channel: string; pattern: RegExp };
  /** Extra user settings (merged over the harness's defaults). */
  settings?: Record<string, unknown>;
  /** Files written into the workspace folder before the window opens (relative path → text). */
  files?: Record<string, string>;
  /** Extra environment for code-server (and so the extension host). */
  env?: Record<string, string>;
  /** Milliseconds to wait for the activation signal (default 120 s). */
  activationTimeoutMs?: number;
}

export interface GhostText {
  /** Ghost text on the cursor's line (all inline parts, joined). */
  inline: string;
  /** Ghost lines shown below (a multi-line suggestion). */
  below: string[];
  /** The whole suggestion as it would be inserted, best effort: inline + '\n' + below lines. */
  text: string;
}

export interface EditorState {
  uri: string;
  fileName: string;
  languageId: string;
  version: number;
  isDirty: boolean;
  text: string;
  lineCount: number;
  selections: { anchor: Pos; active: Pos; start: Pos; end: Pos }[];
}
export interface Pos {
  line: number;
  character: number;
}

const DEFAULT_SETTINGS: Record<string, unknown> = {
  'security.workspace.trust.enabled': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'workbench.editor.enablePreview': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'chat.disableAIFeatures': true,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'git.enabled': false,
  'files.autoSave': 'off',
  'editor.minimap.enabled': false,
  'editor.inlineSuggest.enabled': true,
  'editor.autoClosingBrackets': 'never',
  'editor.autoClosingQuotes': 'never',
  'editor.autoClosingComments': 'never',
  'editor.autoSurround': 'never',
  'editor.autoIndent': 'none',
  'editor.formatOnType': false,
  'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' },
  'editor.suggestOnTriggerCharacters': false,
  'editor.wordBasedSuggestions': 'off',
  'editor.parameterHints.enabled': false,
  'editor.acceptSuggestionOnEnter': 'off',
  'editor.hover.enabled': false,
  'editor.lightbulb.enabled': 'off',
};

/**
 * Runs one named part of a test. On failure it saves a screenshot and adds what a reader needs to
 * the error: the extension's debug state, the notifications on screen and the session's logs.
 * The duration goes to stderr (and to `timings`, when given) either way.
 */
export async function step(
  session: VsCodeSession | undefined,
  debugState: () => Promise<unknown>,
  name: string,
  body: () => Promise<void>,
  timings?: Record<string, number>,
): Promise<void> {
  const t = Date.now();
  try {
    await body();
  } catch (err) {
    await session?.screenshot(`FAILED-${name}`).catch(() => undefined);
    let extra = '';
    try {
      extra += `\n--- debug state ---\n${JSON.stringify(await debugState(), null, 2)}`;
    } catch (e) {
      extra += `\n(debug state unavailable: ${String(e)})`;
    }
    try {
      if (session) extra += `\n--- notifications ---\n${(await session.notifications()).join('\n---\n')}`;
    } catch {
      /* no page */
    }
    if (session) extra += `\n${session.diagnostics()}`;
    if (err instanceof Error) err.message += extra;
    throw err;
  } finally {
    const ms = Date.now() - t;
    if (timings) timings[name] = ms;
    process.stderr.write(`[e2e] ${name}: ${ms} ms\n`);
  }
}

export class VsCodeSession {
  readonly runId: string;
  readonly port: number;
  readonly runDir: string;
  readonly workspace: string;
  readonly userDataDir: string;
  page!: Page;
  context!: BrowserContext;
  /** Milliseconds each start phase took. */
  readonly timings: Record<string, number> = {};
  private codeServer?: ChildProcess;
  private bridgePort = 0;
  private logStream?: WriteStream;
  private stopped = false;
  /** Processes of the run still alive 5 s after code-server exited (set by stop()). */
  orphans: { pid: number; cmdline: string }[] = [];
  private screenshotCount = 0;

  private constructor(
    readonly options: SessionOptions,
    readonly prereqs: Prereqs,
    runDir: string,
    port: number,
  ) {
    this.runDir = runDir;
    this.runId = basename(runDir);
    this.port = port;
    this.workspace = join(runDir, 'workspace');
    this.userDataDir = join(runDir, 'user-data');
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  private get extensionsDir(): string {
    return join(this.runDir, 'extensions');
  }
  private get tmpDir(): string {
    return join(this.runDir, 'tmp');
  }
  get artifactsDir(): string {
    return ARTIFACTS_DIR;
  }

  /** Starts code-server and Chromium and waits until the extension under test is active. */
  static async start(options: SessionOptions): Promise<VsCodeSession> {
    const prereqs = findPrereqs();
    installExitHooks();
    await mkdir(ARTIFACTS_DIR, { recursive: true });
    const runDir = await mkdtemp(join(tmpdir(), 'opt-e2e-'));
    const session = new VsCodeSession(options, prereqs, runDir, await freePort());
    live.add(session);
    try {
      await session.boot();
    } catch (err) {
      await session.screenshot('start-failure').catch(() => undefined);
      const diag = session.diagnostics();
      await session.stop();
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${diag}`, { cause: err });
    }
    return session;
  }

  private log(line: string): void {
    this.logStream?.write(`[${new Date().toISOString()}] ${line}\n`);
  }

  private baseEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TMPDIR: this.tmpDir,
      XDG_CONFIG_HOME: join(this.runDir, 'xdg', 'config'),
      XDG_DATA_HOME: join(this.runDir, 'xdg', 'data'),
      XDG_CACHE_HOME: join(this.runDir, 'xdg', 'cache'),
      XDG_STATE_HOME: join(this.runDir, 'xdg', 'state'),
      OPT_E2E_RUN: this.runId,
      // VS Code's server would otherwise run the user's interactive login shell (`$SHELL -i -l`) to
      // read its environment: slow (10 s time-out), and killing it mid-way can leave the shell's
      // rc files in a bad state (a stale pyenv rehash lock made every later `bash -i` wait 60 s).
      VSCODE_CLI: '1',
      ...this.options.env,
    };
    // The test process may run under Playwright-ish or Node test env vars that must not leak.
    delete env.NODE_OPTIONS;
    delete env.NODE_TEST_CONTEXT;
    delete env.VSCODE_IPC_HOOK_CLI;
    return env;
  }

  private async boot(): Promise<void> {
    const t0 = Date.now();
    for (const d of [this.workspace, this.userDataDir, join(this.userDataDir, 'User'), this.extensionsDir, this.tmpDir]) {
      await mkdir(d, { recursive: true });
    }
    // This session's artifacts from earlier runs would only confuse.
    for (const f of await readdir(ARTIFACTS_DIR)) {
      if (f.startsWith(`${this.options.name}-`)) await rm(join(ARTIFACTS_DIR, f), { recursive: true, force: true });
    }
    this.logStream = createWriteStream(join(ARTIFACTS_DIR, `${this.options.name}-session.log`));
    this.log(`run dir ${this.runDir}, port ${this.port}`);
    for (const [rel, text] of Object.entries(this.options.files ?? {})) {
      const p = join(this.workspace, rel);
      await mkdir(join(p, '..'), { recursive: true });
      await writeFile(p, text);
    }
    await writeFile(
      join(this.userDataDir, 'User', 'settings.json'),
      JSON.stringify({ ...DEFAULT_SETTINGS, ...this.options.settings }, null, 2),
    );

    // Install the extensions (bridge first).
    const bridge = await packBridge(this.runDir, REPO_ROOT);
    for (const vsix of [bridge, ...this.options.vsix]) {
      const t = Date.now();
      const out = execFileSync(
        this.prereqs.node,
        [
          this.prereqs.codeServerEntry,
          '--user-data-dir',
          this.userDataDir,
          '--extensions-dir',
          this.extensionsDir,
          '--install-extension',
          vsix,
          '--force',
        ],
        { env: this.baseEnv(), timeout: 120_000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      this.log(`installed ${vsix} in ${Date.now() - t} ms: ${out.trim()}`);
    }
    this.timings.install = Date.now() - t0;

    // code-server in its own process group (session), output into the artifacts.
    const t1 = Date.now();
    const csLog = createWriteStream(join(ARTIFACTS_DIR, `${this.options.name}-code-server.log`));
    this.codeServer = spawn(
      this.prereqs.node,
      [
        this.prereqs.codeServerEntry,
        '--auth',
        'none',
        '--bind-addr',
        `127.0.0.1:${this.port}`,
        '--user-data-dir',
        this.userDataDir,
        '--extensions-dir',
        this.extensionsDir,
        '--disable-telemetry',
        '--disable-update-check',
        '--disable-workspace-trust',
        '--config',
        join(this.runDir, 'code-server.yaml'),
        this.workspace,
      ],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...this.baseEnv(), OPT_E2E_BRIDGE_FILE: join(this.runDir, 'bridge.json') },
      },
    );
    this.codeServer.stdout?.pipe(csLog);
    this.codeServer.stderr?.pipe(csLog);
    const exited = new Promise<never>((_, reject) => {
      this.codeServer!.once('exit', (code, signal) => reject(new Error(`code-server exited early (code ${code}, signal ${signal})`)));
    });
    exited.catch(() => undefined);
    await Promise.race([
      exited,
      waitFor(
        'code-server /healthz',
        async () => {
          const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2000) });
          return res.ok;
        },
        60_000,
        200,
      ),
    ]);
    this.timings.codeServer = Date.now() - t1;
    this.log(`code-server healthy after ${this.timings.codeServer} ms (pid ${this.codeServer.pid})`);

    // Chromium with a private profile; Playwright must not install signal handlers of its own.
    const t2 = Date.now();
    this.context = await chromium.launchPersistentContext(join(this.runDir, 'chromium-profile'), {
      executablePath: this.prereqs.chromium,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--no-default-browser-check',
      ],
      env: this.baseEnv() as Record<string, string>,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      viewport: { width: 1400, height: 900 },
      timeout: 60_000,
    });
    this.context.setDefaultTimeout(30_000);
    this.page = this.context.pages()[0] ?? (await this.context.newPage());
    const consoleLog = createWriteStream(join(ARTIFACTS_DIR, `${this.options.name}-browser-console.log`));
    this.page.on('console', (m) => consoleLog.write(`[${m.type()}] ${m.text()}\n`));
    this.page.on('pageerror', (e) => consoleLog.write(`[pageerror] ${e.message}\n`));
    await this.page.goto(`${this.url}/?folder=${encodeURIComponent(this.workspace)}`, { timeout: 60_000 });
    await this.page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await this.page.locator('#workbench\\.parts\\.statusbar').waitFor({ timeout: 60_000 });
    this.timings.workbench = Date.now() - t2;
    this.log(`workbench up after ${this.timings.workbench} ms`);

    // The bridge, then the extension under test.
    const t3 = Date.now();
    const bridgeFile = join(this.runDir, 'bridge.json');
    this.bridgePort = await waitFor(
      'the e2e bridge extension to start',
      async () => {
        if (!existsSync(bridgeFile)) return undefined;
        const { port } = JSON.parse(await readFile(bridgeFile, 'utf8')) as { port: number };
        return port;
      },
      60_000,
      200,
    );
    await this.bridge('ping');
    this.log(`bridge up after ${Date.now() - t3} ms`);
    const timeout = this.options.activationTimeoutMs ?? 120_000;
    if (this.options.activation) {
      const { channel, pattern } = this.options.activation;
      await waitFor(
        `the "${pattern.source}" line in output channel "${channel}"`,
        () => this.channelLogMatches(channel, pattern),
        timeout,
        200,
      );
      this.log(`activation line after ${Date.now() - t3} ms`);
    }
    await waitFor(
      `extension ${this.options.extensionId} to be active`,
      async () => {
        const x = await this.bridge<{ found: boolean; isActive: boolean }>('extension', { id: this.options.extensionId });
        if (!x.found) throw new Error(`extension ${this.options.extensionId} is not installed`);
        return x.isActive;
      },
      timeout,
      200,
    );
    const t4 = Date.now();
    await this.idle();
    this.log(`active after ${t4 - t3} ms, then an idle callback after ${Date.now() - t4} ms`);
    this.timings.activation = Date.now() - t3;
    this.timings.total = Date.now() - t0;
    this.log(`extension active after ${this.timings.activation} ms; timings ${JSON.stringify(this.timings)}`);
  }

  // ----------------------------------------------------------------------------------------------
  // Logs

  /** Log files of output channel `channel` (log channels and plain ones) under the user-data-dir. */
  channelLogFiles(channel: string): string[] {
    return filesUnder(join(this.userDataDir, 'logs')).filter((f) => {
      const b = basename(f);
      return b === `${channel}.log` || new RegExp(`^\\d+-${channel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.log$`).test(b);
    });
  }

  /** The text of output channel `channel` so far ('' when it has no file yet). */
  channelLog(channel: string): string {
    return this.channelLogFiles(channel)
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
  }

  private channelLogMatches(channel: string, pattern: RegExp): boolean {
    return pattern.test(this.channelLog(channel));
  }

  /** The extension host's own log (activation and its errors). */
  extensionHostLog(): string {
    return filesUnder(join(this.userDataDir, 'logs'))
      .filter((f) => basename(f) === 'remoteexthost.log')
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
  }

  /** A short description of the state of things, for error messages. */
  diagnostics(): string {
    const parts = [`run dir: ${this.runDir}`];
    const host = this.extensionHostLog();
    if (host) parts.push(`--- extension host log (tail) ---\n${tail(host)}`);
    if (this.options.activation) {
      const ch = this.channelLog(this.options.activation.channel);
      parts.push(`--- output channel "${this.options.activation.channel}" (tail) ---\n${ch ? tail(ch) : '(no log file)'}`);
    }
    return parts.join('\n');
  }

  // ----------------------------------------------------------------------------------------------
  // The bridge (state and commands, inside the extension host)

  async bridge<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.bridgePort}/`, {
      method: 'POST',
      body: JSON.stringify({ op, ...args }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json()) as { ok: boolean; result?: T; error?: string };
    if (!body.ok) throw new Error(`bridge ${op} failed: ${body.error}`);
    return body.result as T;
  }

  /** Runs a command in the extension host and returns its result (no UI involved). */
  executeCommand<T = unknown>(command: string, ...args: unknown[]): Promise<T> {
    return this.bridge<T>('exec', { command, args });
  }

  /** The active text editor's document and selections (null when none). */
  editor(): Promise<EditorState | null> {
    return this.bridge<EditorState | null>('editor');
  }

  /** The active editor's document text. */
  async documentText(): Promise<string> {
    const e = await this.editor();
    if (!e) throw new Error('no active text editor');
    return e.text;
  }

  // ----------------------------------------------------------------------------------------------
  // UI actions

  /** Waits for one renderer idle callback (VS Code creates editor contributions in idle callbacks). */
  async idle(times = 1): Promise<void> {
    for (let i = 0; i < times; i++) {
      await withTimeout('renderer idle callback', this.page.evaluate(IDLE_JS), 15_000);
    }
  }

  /** The active editor group's (code) editor. */
  activeEditor() {
    return this.page.locator('.editor-group-container.active .monaco-editor').first();
  }

  /** Opens a workspace file through Quick Open (Ctrl+P), clicking its row; waits until it is the active editor. */
  async openFile(relPath: string): Promise<void> {
    const t = Date.now();
    const target = join(this.workspace, relPath);
    await this.dismissQuickInput();
    await this.page.keyboard.press('Control+P');
    const input = this.page.locator('.quick-input-widget .quick-input-box input');
    await input.waitFor({ state: 'visible', timeout: 15_000 });
    await input.fill(relPath);
    const name = basename(relPath);
    const row = this.page
      .locator('.quick-input-list .monaco-list-row')
      .filter({
        has: this.page.locator('.label-name').getByText(name, { exact: true }),
      })
      .first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    await row.click();
    await waitFor(`${relPath} to be the active editor`, async () => (await this.editor())?.fileName === target, 15_000);
    await this.activeEditor().locator('.view-lines').waitFor({ state: 'visible', timeout: 15_000 });
    await this.focusEditor();
    const t2 = Date.now();
    // Pitfall: the inline-completion controller is created in an idle callback after the editor opens.
    await this.idle(2);
    this.log(`opened ${relPath} in ${Date.now() - t} ms (idle wait ${Date.now() - t2} ms)`);
  }

  /** Gives the active editor keyboard focus (without moving the cursor). */
  async focusEditor(): Promise<void> {
    await this.dismissQuickInput();
    await waitFor(
      'the editor to take focus',
      async () => {
        // A short per-try timeout: with no editor open each try would otherwise wait Playwright's 30 s.
        await this.activeEditor().locator('textarea.inputarea, .native-edit-context').first().focus({ timeout: 1_000 });
        return this.page.evaluate<boolean>("!!document.activeElement?.closest('.editor-group-container.active .monaco-editor')");
      },
      10_000,
      200,
    );
  }

  /**
   * Sets the selection through the bridge (anchor → active, zero-based), then waits until the
   * renderer shows it (the status bar's "Ln, Col"): the extension host's selection reaches the
   * window asynchronously, and keys typed before it arrives land at the old cursor. The editor
   * takes focus first: focusing dismisses a quick input still on screen with Escape, which in the
   * editor would collapse the new selection.
   */
  async select(anchor: Pos, active: Pos = anchor): Promise<void> {
    await this.focusEditor();
    await this.bridge('select', { anchor, active });
    await this.waitForCursor(active, undefined, anchor.line !== active.line || anchor.character !== active.character);
  }

  /**
   * Waits until the renderer's cursor is at `pos` (no tabs before it on its line: Col is a visual
   * column) and, when `selected` is given, until the status bar does (or does not) show "(N
   * selected)": a cursor already at `pos` from an older, collapsed selection must not pass.
   */
  async waitForCursor(pos: Pos, timeoutMs = 10_000, selected?: boolean): Promise<void> {
    await waitFor(
      `the cursor at ${pos.line + 1}:${pos.character + 1}${selected === undefined ? '' : selected ? ' with a selection' : ' without a selection'} in the window`,
      async () => {
        const text = await this.statusBarText();
        const m = /Ln (\d+), Col (\d+)/.exec(text);
        if (!m || Number(m[1]) - 1 !== pos.line || Number(m[2]) - 1 !== pos.character) return false;
        return selected === undefined || /\(\d+ selected\)/.test(text) === selected;
      },
      timeoutMs,
      50,
    );
  }

  /** Moves the cursor to the end of the document (Ctrl+End). */
  async cursorToEnd(): Promise<void> {
    await this.focusEditor();
    await this.page.keyboard.press('Control+End');
  }

  /** Types text as key presses into the focused editor. */
  async type(text: string, delayMs = 40): Promise<void> {
    await this.page.keyboard.type(text, { delay: delayMs });
  }

  async press(key: string): Promise<void> {
    await this.page.keyboard.press(key);
  }

  /** Ghost text shown in the active editor, or null when none is shown. */
  async ghostText(): Promise<GhostText | null> {
    return this.page.evaluate<GhostText | null>(GHOST_TEXT_JS);
  }

  /** Waits until ghost text is shown (and, if given, satisfies `accept`); returns it. */
  async waitForGhostText(timeoutMs = 30_000, accept: (g: GhostText) => boolean = () => true): Promise<GhostText> {
    return waitFor(
      'ghost text in the active editor',
      async () => {
        const g = await this.ghostText();
        return g && accept(g) ? g : undefined;
      },
      timeoutMs,
      100,
    );
  }

  /** The line holding the ghost text as displayed (real and ghost text in order), or null when none shows. */
  async renderedGhostLine(): Promise<string | null> {
    return this.page.evaluate<string | null>(RENDERED_GHOST_LINE_JS);
  }

  /** The rendered text of the active editor's visible lines (ghost text excluded, U+00A0 as spaces). */
  async visibleText(): Promise<string> {
    return this.page.evaluate<string>(VISIBLE_TEXT_JS);
  }

  async dismissQuickInput(): Promise<void> {
    const widget = this.page.locator('.quick-input-widget');
    if (await widget.isVisible().catch(() => false)) {
      await this.page.keyboard.press('Escape');
      await widget.waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => undefined);
    }
  }

  /**
   * Runs a command through the command palette: F1, type the label, click the row whose label is
   * exactly `label` (e.g. "OPT Complete: Generate text").
   */
  async runFromPalette(label: string): Promise<void> {
    const t = Date.now();
    await this.dismissQuickInput();
    await this.focusEditor().catch(() => undefined);
    await this.page.keyboard.press('F1');
    const input = this.page.locator('.quick-input-widget .quick-input-box input');
    await input.waitFor({ state: 'visible', timeout: 15_000 });
    await input.fill(`>${label}`);
    const row = this.page
      .locator('.quick-input-list .monaco-list-row')
      .filter({
        has: this.page.locator('.label-name').getByText(label, { exact: true }),
      })
      .first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    await row.click();
    this.log(`ran "${label}" from the palette in ${Date.now() - t} ms`);
  }

  /** Answers an input box (e.g. a command's prompt) and presses Enter. */
  async answerInputBox(text: string, timeoutMs = 15_000): Promise<void> {
    const input = this.page.locator('.quick-input-widget .quick-input-box input');
    await input.waitFor({ state: 'visible', timeout: timeoutMs });
    await input.fill(text);
    await waitFor('the input box to hold the answer', async () => (await input.inputValue()) === text, 5_000, 50);
    await input.press('Enter');
  }

  /** The status bar's text (all items). */
  async statusBarText(): Promise<string> {
    return (await this.page.locator('#workbench\\.parts\\.statusbar').innerText()).replace(/\u00a0/g, ' ');
  }

  /** Visible notification toasts (text). */
  async notifications(): Promise<string[]> {
    return this.page.locator('.notifications-toasts .notification-toast').allInnerTexts();
  }

  /** Saves a screenshot into test-artifacts/e2e/<session>-<nn>-<name>.png; returns its path. */
  async screenshot(name: string): Promise<string> {
    const n = String(++this.screenshotCount).padStart(2, '0');
    const file = join(ARTIFACTS_DIR, `${this.options.name}-${n}-${name.replace(/[^\w.-]+/g, '-')}.png`);
    await withTimeout('screenshot', this.page.screenshot({ path: file, timeout: 15_000 }), 20_000);
    this.log(`screenshot ${file}`);
    return file;
  }

  // ----------------------------------------------------------------------------------------------
  // Stopping

  /** SIGKILLs everything the session started, synchronously (for exit paths). */
  killNow(removeRunDir = false): void {
    if (this.codeServer?.pid) {
      try {
        process.kill(-this.codeServer.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    killPids(processesOfRun(this.runId, this.runDir), 'SIGKILL');
    if (removeRunDir && !process.env.OPT_E2E_KEEP) {
      try {
        rmSync(this.runDir, { recursive: true, force: true, maxRetries: 2 });
      } catch {
        /* best effort */
      }
    }
  }

  /** Stops Chromium, code-server and every process of the run; copies logs into the artifacts. Never throws. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const t = Date.now();
    if (this.context) await withTimeout('closing Chromium', this.context.close(), 15_000).catch((e) => this.log(String(e)));
    const cs = this.codeServer;
    if (cs?.pid && cs.exitCode === null && cs.signalCode === null) {
      const gone = new Promise<void>((r) => cs.once('exit', () => r()));
      try {
        process.kill(-cs.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await withTimeout('code-server to exit', gone, 8_000).catch(() => {
        try {
          process.kill(-cs.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      });
    }
    // Members of code-server's group that ignore SIGTERM (VS Code's `bash -i -l` shell-environment probe).
    if (cs?.pid) {
      try {
        process.kill(-cs.pid, 'SIGKILL');
      } catch {
        /* group gone */
      }
    }
    // Whatever is left (extension host, runtime processes, Chromium helpers) gets a few seconds
    // to exit on its own (recorded: a runtime still alive here outlived its extension host), then TERM, then KILL.
    await waitFor(
      "the run's processes to exit by themselves",
      () => processesOfRun(this.runId, this.runDir).length === 0,
      5_000,
      100,
    ).catch(() => undefined);
    this.orphans = processesOfRun(this.runId, this.runDir).map((pid) => ({ pid, cmdline: cmdlineOf(pid) }));
    if (this.orphans.length > 0) this.log(`still alive after code-server exited: ${JSON.stringify(this.orphans)}`);
    killPids(processesOfRun(this.runId, this.runDir), 'SIGTERM');
    await waitFor("the run's processes to exit", () => processesOfRun(this.runId, this.runDir).length === 0, 5_000, 100).catch(() =>
      killPids(processesOfRun(this.runId, this.runDir), 'SIGKILL'),
    );
    await waitFor("the run's processes to be killed", () => processesOfRun(this.runId, this.runDir).length === 0, 5_000, 100).catch((e) =>
      this.log(`left behind: ${processesOfRun(this.runId, this.runDir).join(' ')} (${e})`),
    );
    live.delete(this);
    // Keep the VS Code logs (extension host, output channels) with the artifacts.
    const logs = join(this.userDataDir, 'logs');
    if (existsSync(logs))
      await cp(logs, join(ARTIFACTS_DIR, `${this.options.name}-vscode-logs`), { recursive: true, force: true }).catch(() => undefined);
    this.log(`stopped in ${Date.now() - t} ms`);
    await new Promise<void>((r) => (this.logStream ? this.logStream.end(r) : r()));
    if (!process.env.OPT_E2E_KEEP) await rm(this.runDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  }

  /** Pids of the processes of this run still alive (for leak checks). */
  leftoverProcesses(): number[] {
    return processesOfRun(this.runId, this.runDir);
  }
}

// ------------------------------------------------------------------------------------------------
// The packaged extension

/** Newest modification time of the files under `paths` (ms). */
function newestMtime(paths: string[]): number {
  let newest = 0;
  for (const p of paths) {
    if (!existsSync(p)) continue;
    const st = statSync(p);
    if (st.isDirectory()) newest = Math.max(newest, ...filesUnder(p, 12).map((f) => statSync(f).mtimeMs), 0);
    else newest = Math.max(newest, st.mtimeMs);
  }
  return newest;
}

/**
 * The extension's VSIX: $OPT_E2E_VSIX if set, else `opt-complete-linux-x64.vsix` at the repository
 * root, built with `npm run package` when missing or older than the sources.
 */
export async function ensureVsix(): Promise<string> {
  if (process.env.OPT_E2E_VSIX) return resolve(process.env.OPT_E2E_VSIX);
  const vsix = join(REPO_ROOT, 'opt-complete-linux-x64.vsix');
  const sources = ['package.json', 'extension/src', 'runtime/src', 'protocol', 'scripts/package.mjs', 'scripts/build.mjs', 'media'].map(
    (p) => join(REPO_ROOT, p),
  );
  if (existsSync(vsix) && statSync(vsix).mtimeMs >= newestMtime(sources)) return vsix;
  const t = Date.now();
  process.stderr.write(`[e2e] ${existsSync(vsix) ? 'VSIX older than the sources' : 'no VSIX'}: running npm run package\n`);
  try {
    execFileSync('npm', ['run', 'package'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  } catch (err) {
    throw new Error(`npm run package failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!existsSync(vsix)) throw new Error(`npm run package did not produce ${vsix}`);
  process.stderr.write(`[e2e] packaged in ${Date.now() - t} ms\n`);
  return vsix;
}
