// Choosing what the runtime runs: the OPT sizes with what each needs in memory at each precision
// (models/optModels.ts), a local folder, or any Hub id; then device and precision. Each choice is
// written to the settings, and the settings change restarts the runtime (ctx.ts).

import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import * as vscode from 'vscode';
import type { Ctx } from './ctx.js';
import {
  OPT_SIZES,
  type RuntimeSizing,
  formatBytes,
  formatParams,
  knownSize,
  memoryLine,
  modelNeedBytes,
  parameterCount,
  resolveDtype,
  suggestedAssistant,
} from './models/optModels.js';
import { DEVICE_SETTINGS, DTYPE_SETTINGS, type DeviceSetting, type DtypeSetting } from './settings.js';

interface ModelItem extends vscode.QuickPickItem {
  model?: string;
  action?: 'folder' | 'custom';
}

export async function selectModelCommand(ctx: Ctx, args?: { model?: string }): Promise<void> {
  let model = typeof args?.model === 'string' ? args.model : undefined;
  if (model === undefined) {
    const current = ctx.config.model;
    const dtype = resolveDtype(ctx.config.dtype, ctx.config.device);
    const total = totalmem();
    const available = availableMemoryBytes();
    const sizing = runtimeSizing(ctx);
    const items: ModelItem[] = OPT_SIZES.map((s) => {
      const need = modelNeedBytes(s.shape, dtype, sizing);
      return {
        label: `${s.id === current ? '$(check) ' : ''}${s.id}`,
        description: `${formatParams(parameterCount(s.shape))} parameters · ${dtype}: ${formatBytes(need)}${need > total ? ' — more than this machine has' : need > available ? ' — more than is free now' : ''}`,
        detail: memoryLine(s.shape, total, sizing),
        model: s.id,
      };
    });
    items.push(
      { label: '', kind: vscode.QuickPickItemKind.Separator },
      {
        label: '$(folder-opened) Choose Local Folder…',
        description: 'a folder with config.json and weights (Hugging Face layout)',
        action: 'folder',
      },
      { label: '$(edit) Enter a Hugging Face Id or Path…', description: 'any OPT checkpoint', action: 'custom' },
    );
    const pick = await vscode.window.showQuickPick(items, {
      title: 'OPT: Choose Model',
      placeHolder: `Now: ${current}. Memory at ${dtype} with the KV cache for ${sizing.contextTokens} tokens (${formatBytes(available)} of ${formatBytes(total)} free); the detail line shows every precision.`,
      matchOnDescription: true,
    });
    if (!pick) return;
    if (pick.action === 'folder') {
      const folder = await vscode.window.showOpenDialog({
        canSelectFolders: true,
        canSelectFiles: false,
        canSelectMany: false,
        openLabel: 'Use This Model',
        title: 'A folder with an OPT checkpoint (config.json and weights)',
      });
      model = folder?.[0]?.fsPath;
    } else if (pick.action === 'custom') {
      model = await vscode.window.showInputBox({
        title: 'OPT: Model',
        prompt: 'A Hugging Face id (facebook/opt-350m) or a folder path',
        value: current,
        ignoreFocusOut: true,
      });
    } else {
      model = pick.model;
    }
  }
  model = model?.trim();
  if (!model) return;
  await ctx.config.set('model', model);
  ctx.log.info(`model set to ${model}`);
  if (ctx.config.engine === 'local') ctx.startWithProgress();
  offerAssistant(ctx, model);
}

/** For a large OPT without an assistant, offers the small one that can draft for it (not waited on). */
function offerAssistant(ctx: Ctx, model: string): void {
  const assistant = suggestedAssistant(model);
  if (!assistant || ctx.config.engine !== 'local' || ctx.config.assistantModel !== '') return;
  const use = `Use ${assistant} as Assistant`;
  void vscode.window
    .showInformationMessage(
      `${assistant} can draft tokens for ${model}, which checks them in one pass: the same text from fewer passes of the large model (assisted generation, optComplete.assistantModel).`,
      use,
    )
    .then(async (choice) => {
      if (choice !== use) return;
      await ctx.config.set('assistantModel', assistant);
      ctx.log.info(`assistant model set to ${assistant}`);
    });
}

const DEVICE_DESCRIPTIONS: Record<DeviceSetting, string> = {
  auto: "the runtime's default (the CPU)",
  cpu: "onnxruntime's CPU provider: int8 by default",
  webgpu: 'a GPU through WebGPU: fp16 by default',
  cuda: "an NVIDIA GPU (needs onnxruntime's CUDA build): fp16 by default",
};

export async function selectDeviceCommand(ctx: Ctx, args?: { device?: DeviceSetting }): Promise<void> {
  const device = args?.device ?? (await pickSetting('OPT: Device', DEVICE_SETTINGS, ctx.config.device, (d) => DEVICE_DESCRIPTIONS[d]));
  if (!device || !DEVICE_SETTINGS.includes(device)) return;
  await ctx.config.set('device', device);
}

export async function selectDtypeCommand(ctx: Ctx, args?: { dtype?: DtypeSetting }): Promise<void> {
  const current = ctx.config.dtype;
  const size = knownSize(ctx.config.model);
  const describe = (d: DtypeSetting) => {
    const resolved = resolveDtype(d, ctx.config.device);
    const mem = size ? ` · ${size.label}: ${formatBytes(modelNeedBytes(size.shape, resolved, runtimeSizing(ctx)))}` : '';
    return d === 'auto'
      ? `${resolved} on this device${mem}`
      : `${{ int8: '8-bit weights', int4: '4-bit weights', fp16: 'half precision', fp32: 'full precision' }[d]}${mem}`;
  };
  const dtype = args?.dtype ?? (await pickSetting('OPT: Precision', DTYPE_SETTINGS, current, describe));
  if (!dtype || !DTYPE_SETTINGS.includes(dtype)) return;
  await ctx.config.set('dtype', dtype);
}

/**
 * One value of a setting, the current one checked and highlighted (showQuickPick always
 * highlights the first row, so Enter would change the setting).
 */
function pickSetting<T extends string>(
  title: string,
  values: readonly T[],
  current: T,
  describe: (v: T) => string,
): Promise<T | undefined> {
  return new Promise((resolve) => {
    const pick = vscode.window.createQuickPick<vscode.QuickPickItem & { value: T }>();
    pick.title = title;
    pick.items = values.map((v) => ({ label: `${v === current ? '$(check) ' : ''}${v}`, description: describe(v), value: v }));
    pick.activeItems = pick.items.filter((i) => i.value === current);
    let chosen: T | undefined;
    pick.onDidAccept(() => {
      chosen = pick.selectedItems[0]?.value;
      pick.hide();
    });
    pick.onDidHide(() => {
      pick.dispose();
      resolve(chosen);
    });
    pick.show();
  });
}

/** The context and prefix cache the runtime will be started with (config.ts runtimeInit). */
function runtimeSizing(ctx: Ctx): RuntimeSizing {
  const mib = ctx.config.prefixCacheMiB;
  return { contextTokens: ctx.config.runtimeContextTokens, prefixCacheBytes: mib !== undefined ? mib * 2 ** 20 : undefined };
}

/** Memory available for new allocations (MemAvailable on Linux), else free memory. */
function availableMemoryBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return freemem();
}
