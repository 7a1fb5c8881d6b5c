// End-to-end test, in real VS Code (code-server + headless Chromium, see harness.ts), of what the
// editor shows when the GPU the user chose does not start: optComplete.device is "webgpu" and the
// Vulkan loader is pointed (VK_ICD_FILENAMES / VK_DRIVER_FILES, as test/runtime/device.test.ts does) at a
// driver manifest whose library does not exist, so WebGPU really fails inside onnxruntime and the
// runtime falls back to the CPU. The editor must say so once — a warning with "Choose Device…" and
// "Show Log", the reason in the status bar item's "Device" row — not again when the runtime
// restarts with the same reason, and ghost text must still come from the CPU. A device that cannot
// run here at all (cuda on a machine without it) is refused as a device problem, with "Choose
// Device…", and choosing cpu there recovers.
// Without a Vulkan loader (libvulkan.so.1) the runtime refuses an explicit webgpu instead of
// trying it; the test then checks the error the editor shows for that and skips the rest.
//
// Prerequisites: `bash scripts/e2e-setup.sh`; for the fallback branch also libvulkan1 (see
// scripts/webgpu-setup.sh). Environment as extension.test.ts (OPT_E2E_DTYPE, OPT_E2E_VSIX,
// OPT_E2E_KEEP, OPT_E2E_CACHE).

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Commands } from '../../extension/src/commandIds.js';
import { probeDevices } from '../../runtime/src/device/probe.js';
import { deviceRefused } from '../helpers/devices.js';
import { VsCodeSession, ensureVsix, findPrereqs, step, waitFor } from './harness.js';
import { E2E_DTYPE, EXTENSION_ID, label } from './manifest.js';
import { writeScriptedOpt } from './scriptedModel.js';
import type { InlineCounters } from '../../extension/src/debugState.js';

const DTYPE = E2E_DTYPE;

// What optComplete.debug.state returns (the parts read here).
interface InlineRecord {
  text?: string;
  line: number;
  character: number;
}
interface DebugState {
  runtime: {
    state: string;
    pid?: number;
    detail: { kind: string; reason?: string; info?: { device?: string; deviceFallback?: string; dtype?: string; modelId?: string } };
    counters: { starts: number };
  };
  statusBar: { kind: string; text: string };
  inline: { counters: InlineCounters; last?: InlineRecord };
}

const STORY = 'The ferry crossed the bay before sunrise.\n';
const FALLBACK = /^webgpu failed to initialize: .*running on the CPU instead of the requested webgpu$/;

describe(`a WebGPU device that fails to start in VS Code: the CPU fallback (code-server, ${DTYPE})`, { timeout: 300_000 }, () => {
  let session: VsCodeSession;
  let work = '';
  // Decided before the session starts, exactly as the runtime will decide it (runtime/src/device/select.ts).
  const hasVulkanLoader = process.platform === 'linux' && probeDevices().vulkan.loader;
  const cudaBlocked = deviceRefused('cuda');
  /** The reason the runtime gave, as the first test saw it. */
  let reason = '';

  const state = () => session.executeCommand<DebugState>(Commands.debugState);

  const part = (name: string, body: () => Promise<void>) => step(session, state, name, body);

  const toast = (text: string) => session.page.locator('.notifications-toasts .notification-toast', { hasText: text }).first();
  const statusItem = () => session.page.locator('#workbench\\.parts\\.statusbar [aria-label="OPT Complete: ready"]').first();
  /** The extension's own "device fallback:" warnings in its output channel (the runtime's log lines carry a prefix). */
  const fallbackWarnings = () =>
    session
      .channelLog('OPT Complete')
      .split('\n')
      .filter((l) => /\[warning\] device fallback: /.test(l));
  /** The runtime's own reports of the fallback, forwarded to the same channel. */
  const runtimeFallbackLines = () =>
    session
      .channelLog('OPT Complete')
      .split('\n')
      .filter((l) => /\[warning\] runtime: device fallback: /.test(l));

  before(async () => {
    findPrereqs();
    const vsix = await ensureVsix();
    work = await mkdtemp(join(tmpdir(), 'opt-e2e-fallback-'));
    // A Vulkan driver manifest naming a library that does not exist: the loader finds no driver,
    // Dawn no adapter, and onnxruntime's WebGPU provider fails for real.
    const icd = join(work, 'broken_icd.json');
    await writeFile(
      icd,
      JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: '/nonexistent/libvulkan_broken.so', api_version: '1.3.0' } }),
    );
    const model = join(work, 'scripted-opt');
    // Small (hidden 128: the smallest where the scripted pairs still beat the fallback token) so
    // two loads and a completion fit the time budget; greedy text after anything is " one two …".
    await writeScriptedOpt(model, {
      seed: 21,
      hiddenSize: 128,
      layers: 2,
      maxPositions: 256,
      fallback: ' one',
      bigrams: [
        [' one', ' two'],
        [' two', ' one'],
      ],
    });
    session = await VsCodeSession.start({
      name: 'device-fallback',
      vsix: [vsix],
      extensionId: EXTENSION_ID,
      activation: { channel: 'OPT Complete', pattern: /\bactivated\s*$/m },
      files: { 'story.txt': STORY },
      env: { VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd },
      settings: {
        'optComplete.model': model,
        'optComplete.dtype': DTYPE,
        'optComplete.device': 'webgpu',
        'optComplete.cacheDir': join(work, 'onnx-cache'),
        'optComplete.inline.maxNewTokens': 8,
        // Started by the test: the warning toast hides itself after 18 s, so it must come while the test looks.
        'optComplete.runtime.startup': 'onDemand',
      },
    });
  });

  after(async () => {
    if (session) {
      await session.stop();
      assert.deepEqual(session.leftoverProcesses(), [], 'processes of the run left behind');
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the runtime falls back to the CPU and a warning says why, offering "Choose Device…" and "Show Log"', async () => {
    await part('fallback-warning', async () => {
      // With no editor open the palette helper first waits out its editor-focus attempt (~30 s).
      await session.openFile('story.txt');
      await session.runFromPalette(label(Commands.startRuntime));
      const s = await waitFor(
        'the runtime to be ready or to fail',
        async () => {
          const x = await state();
          return x.runtime.state === 'ready' || x.runtime.state === 'failed' ? x : undefined;
        },
        180_000,
        250,
      );

      if (!hasVulkanLoader) {
        // Without libvulkan.so.1 an explicit webgpu is refused (nothing to try), not a fallback.
        assert.equal(s.runtime.state, 'failed', `refused without a Vulkan loader: ${JSON.stringify(s.runtime)}`);
        assert.match(
          s.runtime.detail.reason ?? '',
          /^the device could not be used: device webgpu is not available: WebGPU on Linux needs Vulkan and libvulkan\.so\.1 was not found/,
        );
        const refused = toast('device webgpu is not available');
        await refused.waitFor({ state: 'visible', timeout: 15_000 });
        await refused.getByRole('button', { name: 'Choose Device…' }).waitFor({ state: 'visible', timeout: 5_000 });
        await session.screenshot('webgpu-refused');
        return;
      }

      assert.equal(s.runtime.state, 'ready', `a fallback, not a failure: ${JSON.stringify(s.runtime)}`);
      const info = s.runtime.detail.info!;
      assert.equal(info.device, 'cpu');
      assert.equal(info.dtype, DTYPE);
      assert.match(info.deviceFallback ?? '', FALLBACK);
      reason = info.deviceFallback!;

      const warning = toast('webgpu failed to initialize');
      await warning.waitFor({ state: 'visible', timeout: 15_000 });
      const message = (await warning.locator('.notification-list-item-message').innerText()).replace(/\u00a0/g, ' ').trim();
      assert.equal(message, `OPT Complete: ${reason}`, "the toast shows the runtime's reason in full");
      // A warning, not an error: the model runs.
      assert.equal(await warning.locator('.codicon-warning').count(), 1, 'a warning icon');
      const showLog = warning.getByRole('button', { name: 'Show Log' });
      const choose = warning.getByRole('button', { name: 'Choose Device…' });
      // The reason is long: the buttons must still be on screen, not pushed below the window
      // (polled: the toast slides in from below).
      const viewport = session.page.viewportSize()!;
      for (const [name, button] of [
        ['Show Log', showLog],
        ['Choose Device…', choose],
      ] as const) {
        await button.waitFor({ state: 'visible', timeout: 5_000 });
        await waitFor(
          `the "${name}" button to be inside the window`,
          async () => {
            const box = await button.boundingBox();
            return box !== null && box.y >= 0 && box.x >= 0 && box.y + box.height <= viewport.height && box.x + box.width <= viewport.width;
          },
          5_000,
          100,
        ).catch(async (err: Error) => {
          err.message += `: ${JSON.stringify(await button.boundingBox())} in ${JSON.stringify(viewport)}`;
          throw err;
        });
      }
      await session.screenshot('fallback-warning');
      assert.equal(fallbackWarnings().length, 1, `one "device fallback" warning in the log:\n${fallbackWarnings().join('\n')}`);

      // "Choose Device…" opens the device picker, the chosen device (webgpu) checked and highlighted (Enter keeps it).
      await choose.click();
      const picker = session.page.locator('.quick-input-widget', { hasText: 'OPT: Device' });
      await picker.waitFor({ state: 'visible', timeout: 15_000 });
      const rows = picker.locator('.quick-input-list .monaco-list-row');
      await waitFor('4 device rows', async () => (await rows.count()) === 4, 10_000, 100);
      const names = (await rows.locator('.label-name').allInnerTexts()).map((t) => t.replace(/\u00a0/g, ' ').trim());
      assert.deepEqual(names, ['auto', 'cpu', 'webgpu', 'cuda']);
      const webgpuRow = rows.filter({ has: session.page.locator('.label-name', { hasText: /^\s*webgpu$/ }) });
      assert.equal(await webgpuRow.locator('.codicon-check').count(), 1, 'the requested device is the checked one');
      assert.equal(
        (await picker.locator('.monaco-list-row.focused .label-name').innerText()).replace(/\u00a0/g, ' ').trim(),
        'webgpu',
        'the highlighted row is the current device',
      );
      await session.screenshot('choose-device');
      await session.press('Escape');
      await picker.waitFor({ state: 'hidden', timeout: 5_000 });
      assert.equal((await state()).runtime.detail.info?.deviceFallback, reason, 'dismissing the picker changes nothing');
    });
  });

  it('the status bar item\'s tooltip shows the CPU and the reason in its "Device" row', async (t) => {
    if (!hasVulkanLoader) return t.skip('no Vulkan loader (libvulkan.so.1): webgpu is refused, there is no fallback to show');
    await part('status-tooltip', async () => {
      const item = statusItem();
      await item.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(await item.innerText(), /scripted-opt/);
      await session.executeCommand('notifications.clearAll');
      await item.hover();
      const hover = session.page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'OPT Complete: ready' }).first();
      await hover.waitFor({ state: 'visible', timeout: 15_000 });
      const row = hover.locator('tr', { has: session.page.locator('td', { hasText: /^Device$/ }) }).first();
      const cells = (await row.locator('td').allInnerTexts()).map((c) => c.replace(/\u00a0/g, ' ').trim());
      await session.screenshot('status-tooltip');
      assert.deepEqual(cells, ['Device', `cpu (${reason})`]);
      await session.page.mouse.move(700, 400);
      await session.press('Escape');
      await hover.waitFor({ state: 'hidden', timeout: 10_000 }).catch(() => undefined);
    });
  });

  it('restarting the runtime falls back again for the same reason without a second warning', async (t) => {
    if (!hasVulkanLoader) return t.skip('no Vulkan loader (libvulkan.so.1): webgpu is refused, there is no fallback to repeat');
    await part('restart-once', async () => {
      const s0 = await state();
      await session.executeCommand('notifications.clearAll');
      await session.runFromPalette(label(Commands.restartRuntime));
      const s1 = await waitFor(
        'a new runtime to be ready',
        async () => {
          const x = await state();
          return x.runtime.state === 'ready' && x.runtime.pid !== undefined && x.runtime.pid !== s0.runtime.pid ? x : undefined;
        },
        120_000,
        250,
      );
      assert.equal(s1.runtime.detail.info?.device, 'cpu');
      assert.equal(s1.runtime.detail.info?.deviceFallback, reason, 'the same fallback, for the same reason');
      // The warning would come right at "ready"; give it time to show (the load progress toast closes too).
      await sleep(3_000);
      await session.screenshot('restarted-no-second-warning');
      const shown = (await session.notifications()).filter((n) => n.includes('failed to initialize'));
      assert.deepEqual(shown, [], 'no second warning toast');
      assert.equal(fallbackWarnings().length, 1, `still one "device fallback" warning in the log:\n${fallbackWarnings().join('\n')}`);
      assert.equal(
        runtimeFallbackLines().length,
        2,
        `the runtime reported the fallback at both starts:\n${runtimeFallbackLines().join('\n')}`,
      );
    });
  });

  it('ghost text still comes, from the CPU', async (t) => {
    if (!hasVulkanLoader) return t.skip('no Vulkan loader (libvulkan.so.1): webgpu is refused, nothing runs');
    await part('ghost-on-cpu', async () => {
      await session.openFile('story.txt');
      const line = STORY.trimEnd();
      await session.select({ line: 0, character: line.length });
      const before = await state();
      await session.type(' Then');
      // Typed key by key, so several requests may answer: wait until what shows is the last one.
      let seen = '';
      const s = await waitFor(
        "ghost text matching the extension's last suggestion",
        async () => {
          const ghost = await session.ghostText();
          const x = await state();
          seen = JSON.stringify({ ghost, last: x.inline.last });
          return ghost && x.inline.last?.text && ghost.inline === x.inline.last.text && x.inline.last.character === `${line} Then`.length
            ? x
            : undefined;
        },
        60_000,
        100,
      ).catch((err: Error) => {
        err.message += `\nlast seen: ${seen}`;
        throw err;
      });
      await session.screenshot('ghost-on-cpu');
      assert.match(s.inline.last?.text ?? '', /^( one two)+( one)?$/, `the scripted continuation: ${JSON.stringify(s.inline.last)}`);
      assert.ok(s.inline.counters.engineCalls > before.inline.counters.engineCalls, 'the completion came from the runtime');
      assert.equal(s.runtime.detail.info?.device, 'cpu');
      assert.equal(s.inline.counters.errors, 0);
    });
  });

  it('a device that cannot run here is a device problem: the error offers "Choose Device…", and choosing cpu recovers', async (t) => {
    if (!cudaBlocked) return t.skip('this machine can run CUDA: nothing to refuse');
    await part('device-refused', async () => {
      await session.executeCommand('notifications.clearAll');
      await session.bridge('updateConfig', { section: 'optComplete', key: 'device', value: 'cuda' });
      const s = await waitFor(
        'the runtime to refuse cuda',
        async () => {
          const x = await state();
          return x.runtime.state === 'failed' ? x : undefined;
        },
        120_000,
        250,
      );
      assert.match(
        s.runtime.detail.reason ?? '',
        /^the device could not be used: device cuda is not available: .*; or choose device auto or cpu$/,
      );
      const error = toast('the device could not be used');
      await error.waitFor({ state: 'visible', timeout: 15_000 });
      assert.equal(await error.getByRole('button', { name: 'Choose Model…' }).count(), 0, 'the model is not at fault');
      await session.screenshot('device-refused');
      // The load's progress notification (with its Cancel) closes: there is no load left to cancel.
      await waitFor(
        'the load progress to close',
        async () => !(await session.notifications()).some((n) => n.includes('OPT Complete: loading')),
        10_000,
        100,
      );
      await error.getByRole('button', { name: 'Choose Device…' }).click();
      const picker = session.page.locator('.quick-input-widget', { hasText: 'OPT: Device' });
      await picker.waitFor({ state: 'visible', timeout: 15_000 });
      await waitFor(
        'cuda highlighted',
        async () =>
          (
            await picker
              .locator('.monaco-list-row.focused .label-name')
              .innerText()
              .catch(() => '')
          )
            .replace(/\u00a0/g, ' ')
            .trim() === 'cuda',
        10_000,
        100,
      );
      await picker.locator('.quick-input-box input').fill('cpu');
      await session.press('Enter');
      const ready = await waitFor(
        'the runtime to be ready on the CPU',
        async () => {
          const x = await state();
          return x.runtime.state === 'ready' && x.runtime.detail.info?.device === 'cpu' ? x : undefined;
        },
        120_000,
        250,
      );
      assert.equal(ready.runtime.detail.info?.deviceFallback, undefined, 'cpu asked for, cpu given');
      assert.equal(await session.bridge('config', { section: 'optComplete', key: 'device' }), 'cpu');
    });
  });
});
