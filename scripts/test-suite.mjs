// Runs one suite of test/ with node's test runner: `unit` (in process, no child processes, seconds a
// file, the whole suite well under 30 s) or `integration` (every other test file: the CLI, `opt rpc`
// and `opt serve` as processes, the extension against a real runtime, fuzzing, parity on bigger
// models). test/e2e/ is neither: `npm run test:e2e` runs it in VS Code.
//
// Tests live in a folder per layer (test/protocol, test/runtime, test/extension, test/bench), named
// after the module they test. A test file is a unit test when it is named *.unit.test.ts; every
// other test/**/*.test.ts is an integration test, so a new file runs somewhere whatever its name. Extra arguments go to `node --test`
// (e.g. --test-name-pattern). Usage: node scripts/test-suite.mjs unit|integration [node --test options]

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..');
const [suite, ...nodeArgs] = process.argv.slice(2);
if (suite !== 'unit' && suite !== 'integration') {
  console.error('usage: node scripts/test-suite.mjs unit|integration [node --test options]');
  process.exit(2);
}

const all = readdirSync(join(repo, 'test'), { recursive: true, encoding: 'utf8' })
  .map((file) =>
    relative(repo, join(repo, 'test', file))
      .split('\\')
      .join('/'),
  )
  .filter((file) => file.endsWith('.test.ts') && !file.startsWith('test/e2e/'))
  .sort();
const isUnit = (file) => file.endsWith('.unit.test.ts');
const files = all.filter((file) => isUnit(file) === (suite === 'unit'));

// One file at a time, as before the split: some tests measure time per step, and the integration
// suites start processes and servers that would compete for the cores.
const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...nodeArgs, ...files], {
  cwd: repo,
  stdio: 'inherit',
});
if (run.error) throw run.error;
process.exit(run.status ?? 1);
