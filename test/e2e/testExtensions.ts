// Small extensions the end-to-end harness writes and packs on the fly (never shipped):
//  - the bridge: an HTTP endpoint inside the extension host so a test can read editor state and
//    run commands (and get their results) without touching the UI — the command palette takes
//    focus and hides ghost text, so state must not be read through it while a suggestion shows;
//  - the dummy: a fixed-string inline completion provider, a command and a log channel, to prove
//    the harness independently of the real extension.

import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const BRIDGE_ID = 'opt-e2e.e2e-bridge';
export const DUMMY_ID = 'opt-e2e.e2e-dummy';
/** What the dummy provider suggests (no spaces, so U+00A0 rendering does not matter). */
export const DUMMY_COMPLETION = 'DUMMY_COMPLETION';

const BRIDGE_JS = String.raw`'use strict';
const vscode = require('vscode');
const http = require('http');
const fs = require('fs');

function pos(p) { return { line: p.line, character: p.character }; }
function editorState() {
  const e = vscode.window.activeTextEditor;
  if (!e) return null;
  const d = e.document;
  return {
    uri: d.uri.toString(), fileName: d.fileName, languageId: d.languageId, version: d.version,
    isDirty: d.isDirty, text: d.getText(), lineCount: d.lineCount,
    selections: e.selections.map((s) => ({ anchor: pos(s.anchor), active: pos(s.active), start: pos(s.start), end: pos(s.end) })),
  };
}
function plain(value) {
  if (value === undefined) return null;
  try { return JSON.parse(JSON.stringify(value)); } catch { return String(value); }
}
async function handle(req) {
  switch (req.op) {
    case 'ping': return { pid: process.pid };
    case 'editor': return editorState();
    case 'documents': return vscode.workspace.textDocuments.map((d) => ({ uri: d.uri.toString(), fileName: d.fileName, isDirty: d.isDirty, text: d.getText() }));
    case 'visibleEditors': return vscode.window.visibleTextEditors.map((e) => ({ uri: e.document.uri.toString(), scheme: e.document.uri.scheme, text: e.document.getText() }));
    case 'exec': return plain(await vscode.commands.executeCommand(req.command, ...(req.args || [])));
    case 'commands': return vscode.commands.getCommands(true);
    case 'extension': {
      const x = vscode.extensions.getExtension(req.id);
      return x ? { found: true, isActive: x.isActive, version: x.packageJSON.version } : { found: false, isActive: false };
    }
    case 'config': return plain(vscode.workspace.getConfiguration(req.section).get(req.key));
    case 'updateConfig': {
      await vscode.workspace.getConfiguration(req.section).update(req.key, req.value, vscode.ConfigurationTarget.Global);
      return plain(vscode.workspace.getConfiguration(req.section).get(req.key));
    }
    case 'tabs': return vscode.window.tabGroups.all.flatMap((g) => g.tabs.map((t) => ({ label: t.label, isActive: t.isActive, group: g.viewColumn, kind: t.input && t.input.constructor ? t.input.constructor.name : null })));
    case 'open': {
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(req.path));
      await vscode.window.showTextDocument(doc, { preview: false });
      return editorState();
    }
    case 'select': {
      const e = vscode.window.activeTextEditor;
      if (!e) throw new Error('no active editor');
      const s = new vscode.Selection(req.anchor.line, req.anchor.character, req.active.line, req.active.character);
      e.selections = [s];
      e.revealRange(s);
      return editorState();
    }
    default: throw new Error('unknown op ' + req.op);
  }
}
exports.activate = function activate(context) {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      let out;
      try { out = { ok: true, result: await handle(JSON.parse(body || '{}')) }; }
      catch (err) { out = { ok: false, error: String(err && err.stack || err) }; }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(out));
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const file = process.env.OPT_E2E_BRIDGE_FILE;
    if (file) fs.writeFileSync(file, JSON.stringify({ port: server.address().port, pid: process.pid }));
  });
  context.subscriptions.push({ dispose: () => server.close() });
};
exports.deactivate = function deactivate() {};
`;

const DUMMY_JS = String.raw`'use strict';
const vscode = require('vscode');
exports.activate = function activate(context) {
  const log = vscode.window.createOutputChannel('E2E Dummy', { log: true });
  context.subscriptions.push(log);
  context.subscriptions.push(vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, {
    provideInlineCompletionItems(document, position) {
      const before = document.lineAt(position.line).text.slice(0, position.character);
      if (!before.trim()) return [];
      log.info('provide at ' + position.line + ':' + position.character);
      return [new vscode.InlineCompletionItem(${JSON.stringify(DUMMY_COMPLETION)}, new vscode.Range(position, position))];
    },
  }));
  context.subscriptions.push(vscode.commands.registerCommand('e2eDummy.hello', async () => {
    const e = vscode.window.activeTextEditor;
    if (e) await e.edit((b) => b.insert(e.selection.active, 'hello from the palette'));
  }));
  log.info('activated');
};
exports.deactivate = function deactivate() {};
`;

function manifest(name: string, displayName: string, extra: Record<string, unknown>): string {
  return JSON.stringify(
    {
      name,
      displayName,
      publisher: 'opt-e2e',
      version: '0.0.1',
      license: 'MIT',
      description: `${displayName} (written by the e2e harness; not shipped)`,
      engines: { vscode: '^1.90.0' },
      main: './extension.js',
      ...extra,
    },
    null,
    2,
  );
}

async function pack(dir: string, out: string, repoRoot: string): Promise<string> {
  const vsce = join(repoRoot, 'node_modules', '.bin', 'vsce');
  await run(vsce, ['package', '--allow-missing-repository', '--skip-license', '--allow-star-activation', '--no-dependencies', '-o', out], {
    cwd: dir,
    timeout: 120_000,
    env: { ...process.env, npm_config_yes: 'true' },
  });
  return out;
}

async function writeExtension(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

/** Writes and packs the bridge extension; returns the VSIX path. */
export async function packBridge(workDir: string, repoRoot = resolve('.')): Promise<string> {
  const dir = join(workDir, 'bridge-src');
  await writeExtension(dir, {
    'package.json': manifest('e2e-bridge', 'E2E Bridge', { activationEvents: ['*'] }),
    'extension.js': BRIDGE_JS,
    'README.md': '# E2E Bridge\n\nTest-only helper of the opt-complete end-to-end tests.\n',
  });
  return pack(dir, join(workDir, 'e2e-bridge.vsix'), repoRoot);
}

/** Writes and packs the dummy extension (inline completions of DUMMY_COMPLETION, command `E2E Dummy: Insert Hello`). */
export async function packDummy(workDir: string, repoRoot = resolve('.')): Promise<string> {
  const dir = join(workDir, 'dummy-src');
  await writeExtension(dir, {
    'package.json': manifest('e2e-dummy', 'E2E Dummy', {
      activationEvents: ['onStartupFinished'],
      contributes: { commands: [{ command: 'e2eDummy.hello', title: 'Insert Hello', category: 'E2E Dummy' }] },
    }),
    'extension.js': DUMMY_JS,
    'README.md': '# E2E Dummy\n\nTest-only extension of the opt-complete end-to-end tests.\n',
  });
  return pack(dir, join(workDir, 'e2e-dummy.vsix'), repoRoot);
}
