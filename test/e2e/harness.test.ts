// Proves the end-to-end harness on its own, with a throwaway extension (a fixed-string inline
// completion provider and one command): if this fails, the harness or the machine is at fault,
// not the OPT Complete extension.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VsCodeSession, findPrereqs, waitFor } from './harness.js';
import { DUMMY_COMPLETION, DUMMY_ID, packDummy } from './testExtensions.js';

describe('e2e harness (throwaway extension)', { timeout: 300_000 }, () => {
  let session: VsCodeSession | undefined;
  let work = '';

  before(async () => {
    findPrereqs(); // fails with the setup instructions when something is missing
    work = await mkdtemp(join(tmpdir(), 'opt-e2e-dummy-'));
    const t = Date.now();
    session = await VsCodeSession.start({
      name: 'harness',
      vsix: [await packDummy(work)],
      extensionId: DUMMY_ID,
      activation: { channel: 'E2E Dummy', pattern: /\bactivated\s*$/m },
      files: { 'notes.txt': 'first line\n', 'call.txt': 'print()\n' },
    });
    process.stderr.write(`[e2e] harness session up in ${Date.now() - t} ms ${JSON.stringify(session.timings)}\n`);
  });

  after(async () => {
    if (session) {
      const s = session;
      await s.stop();
      assert.deepEqual(s.leftoverProcesses(), [], 'processes of the run left behind');
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('shows ghost text after typing and Tab inserts it', async () => {
    const s = session!;
    await s.openFile('notes.txt');
    await s.cursorToEnd();
    await s.type('abc');
    const ghost = await s.waitForGhostText(20_000);
    assert.equal(ghost.inline, DUMMY_COMPLETION);
    await s.screenshot('ghost-text');
    await s.press('Tab');
    await waitFor('the completion in the document', async () => (await s.documentText()) === `first line\nabc${DUMMY_COMPLETION}`, 10_000);
    assert.match(await s.visibleText(), new RegExp(`abc${DUMMY_COMPLETION}`));
    await s.screenshot('accepted');
  });

  it('reads ghost text in the middle of a line', async () => {
    const s = session!;
    await s.openFile('call.txt');
    await s.select({ line: 0, character: 6 }); // between ( and )
    await s.type('x');
    const ghost = await s.waitForGhostText(20_000);
    assert.equal(ghost.inline, DUMMY_COMPLETION);
    await s.screenshot('ghost-mid-line');
    await s.press('Escape');
  });

  it('runs a command from the palette', async () => {
    const s = session!;
    await s.openFile('notes.txt');
    await s.cursorToEnd();
    await s.runFromPalette('E2E Dummy: Insert Hello');
    await waitFor("the command's edit", async () => (await s.documentText()).endsWith('hello from the palette'), 10_000);
    await s.screenshot('palette-command');
  });
});
