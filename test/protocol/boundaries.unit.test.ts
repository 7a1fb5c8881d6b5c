// The import boundaries between the three folders (README, Architecture) are lint rules in
// eslint.config.js; this proves they fire. The repository's own config lints a few lines of code
// as if they were a file in each folder (the file need not exist): an import across a boundary is
// an error, a permitted one is not. In process, through ESLint's Node API: a second or two.

import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { ESLint } from 'eslint';

const repo = resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: repo });
const RULE = '@typescript-eslint/no-restricted-imports';

/** Every message for `code` linted as the file `filePath` (relative to the repository). */
async function lint(filePath: string, code: string): Promise<ESLint.LintResult['messages']> {
  const [result] = await eslint.lintText(code, { filePath: resolve(repo, filePath), warnIgnored: true });
  assert.ok(result, `a result for ${filePath}`);
  return result.messages;
}

/** Asserts that each import in `specifiers` is refused in `filePath` by the boundary rule. */
async function refused(filePath: string, specifiers: string[], reason: RegExp): Promise<void> {
  for (const [i, specifier] of specifiers.entries()) {
    for (const code of [
      `import { a } from '${specifier}';\nexport const b = a;\n`,
      `import type { A } from '${specifier}';\nexport type B = A;\n`,
    ]) {
      const messages = await lint(filePath, code);
      assert.deepEqual(
        messages.map((m) => [m.ruleId, m.severity, m.line]),
        [[RULE, 2, 1]],
        `${filePath}: ${JSON.stringify(specifier)} (case ${i}) is refused and nothing else is reported: ${JSON.stringify(messages)}`,
      );
      assert.match(messages[0]!.message, reason);
    }
  }
  // `export … from` crosses the boundary as much as an import does.
  const reexport = await lint(filePath, `export { a } from '${specifiers[0]}';\n`);
  assert.deepEqual(
    reexport.map((m) => m.ruleId),
    [RULE],
    `${filePath}: a re-export from ${specifiers[0]} is refused`,
  );
}

/** Asserts that `code` in `filePath` lints clean: no boundary error, and nothing else either. */
async function permitted(filePath: string, code: string): Promise<void> {
  const messages = await lint(filePath, code);
  assert.deepEqual(messages, [], `${filePath} may have:\n${code}`);
}

describe('import boundaries (eslint.config.js)', () => {
  test('extension/ may not import from runtime/ (nor onnxruntime-node)', async () => {
    await refused('extension/src/models/modelPicker.ts', ['onnxruntime-node'], /never imports runtime\/ or onnxruntime-node/);
    await refused(
      'extension/src/engines/someEngine.ts',
      ['../../../runtime/src/engine/localEngine.js', '../../../runtime/src/errors.js'],
      /never imports runtime\//,
    );
    await refused('extension/src/main.ts', ['../../runtime/src/session.js'], /never imports runtime\//);
  });

  test('runtime/ may not import vscode nor from extension/', async () => {
    await refused('runtime/src/server/rpcServer.ts', ['vscode'], /never imports vscode or extension\//);
    await refused('runtime/src/session.ts', ['vscode', '../../extension/src/config.js'], /never imports vscode or extension\//);
    await refused('runtime/src/cli.ts', ['../../extension/src/config.js'], /never imports vscode or extension\//);
    await refused('runtime/src/engine/engineWorker.ts', ['../../../extension/src/settings.js'], /never imports vscode or extension\//);
  });

  test('in runtime/, only session.ts imports onnxruntime-node', async () => {
    await refused('runtime/src/decoder.ts', ['onnxruntime-node'], /session\.ts is the only importer of onnxruntime-node/);
    await permitted('runtime/src/session.ts', "import * as ort from 'onnxruntime-node';\nexport const used = ort;\n");
  });

  test('protocol/ may not import from runtime/, extension/, vscode or onnxruntime-node', async () => {
    const reason = /protocol\/ is the leaf/;
    await refused('protocol/protocol.ts', ['../runtime/src/engine/localEngine.js', '../runtime/src/errors.js'], reason);
    await refused('protocol/protocol.ts', ['../extension/src/config.js'], reason);
    await refused('protocol/engine.ts', ['vscode'], reason);
    await refused('protocol/memory.ts', ['onnxruntime-node', 'onnxruntime-node/dist/index.js'], reason);
  });

  test('imports within a folder, from protocol/, and of their own packages are permitted', async () => {
    await permitted(
      'extension/src/engines/someEngine.ts',
      "import * as vscode from 'vscode';\nimport type { EngineInfo } from '../../../../protocol/engine.js';\nimport { Config } from '../../config.js';\nexport const used = [vscode, Config];\nexport type T = EngineInfo;\n",
    );
    await permitted(
      'runtime/src/server/someServer.ts',
      "import type { EngineInfo } from '../../../../protocol/engine.js';\nimport { UsageError } from '../../../../protocol/errors.js';\nimport { loadConfig } from '../../config.js';\nexport const used = [UsageError, loadConfig];\nexport type T = EngineInfo;\n",
    );
    await permitted(
      'protocol/protocol.ts',
      "import { RequestType } from 'vscode-jsonrpc';\nimport type { EngineInfo } from '../engine.js';\nexport const used = RequestType;\nexport type T = EngineInfo;\n",
    );
  });

  test('tests and benchmarks may import from every folder', async () => {
    await permitted(
      'test/runtime/someFeature.test.ts',
      "import * as vscode from 'vscode';\nimport { a } from '../../runtime/src/a.js';\nimport { b } from '../../extension/src/b.js';\nimport { c } from '../../protocol/c.js';\nexport const all = [vscode, a, b, c];\n",
    );
    await permitted('bench/someBench.ts', "import { a } from '../../runtime/src/a.js';\nexport const all = [a];\n");
  });
});
