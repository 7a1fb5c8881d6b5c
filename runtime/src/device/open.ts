// Opens a model's session on the device a load asked for, trying the plan's candidates in order
// (select.ts): a GPU provider whose session cannot be created (no adapter, a missing CUDA library,
// an operator it refuses) is reported and the next candidate is tried, the CPU last. The caller
// gets the device that really runs and, when it is not the one asked for, why.

import { type ModelSession, type SessionSettings, createSession } from '../session.js';
import { type DeviceChoice, type DevicePlan, type DeviceProbe, type ExecutionDevice, fallbackMessage, planDevices } from './select.js';
import { probeDevices } from './probe.js';

export interface DeviceSessionSettings extends Omit<SessionSettings, 'device'> {
  device: DeviceChoice;
  /** A plan made earlier (the caller may have used its first candidate to pick a dtype). */
  plan?: DevicePlan;
  /** For tests: the machine to plan for (default: probeDevices()). */
  probe?: DeviceProbe;
}

export interface DeviceSession {
  session: ModelSession;
  /** The provider the session runs on. */
  device: ExecutionDevice;
  /** Set when a provider that was tried failed: what failed, and where the model runs instead. */
  fallbackReason?: string;
  /** For `auto`: why each GPU provider was not tried (an informational line, not a failure). */
  skipped: DevicePlan['skipped'];
}

/**
 * `model` is a path, or a function giving the path for a device: a load with dtype `auto` needs
 * another graph when it falls back (fp16 for a GPU, int8 for the CPU), converted on demand.
 */
export async function createSessionForDevice(
  model: string | ((device: ExecutionDevice) => Promise<string>),
  settings: DeviceSessionSettings,
  open: (modelPath: string, settings: SessionSettings) => Promise<ModelSession> = createSession,
): Promise<DeviceSession> {
  const { plan: given, probe, device: requested, ...rest } = settings;
  const plan = given ?? planDevices(requested, probe ?? probeDevices());
  const failures: { device: ExecutionDevice; error: string }[] = [];
  for (const [i, device] of plan.candidates.entries()) {
    const last = i === plan.candidates.length - 1;
    try {
      const modelPath = typeof model === 'string' ? model : await model(device);
      // gpu-buffer outputs exist only on a GPU provider: the CPU fallback keeps every output on the host.
      const session = await open(modelPath, { ...rest, device, ...(device === 'cpu' ? { preferredOutputLocation: undefined } : {}) });
      return {
        session,
        device,
        skipped: plan.skipped,
        ...(failures.length > 0 ? { fallbackReason: fallbackMessage(requested, failures, device) } : {}),
      };
    } catch (err) {
      // The CPU is the floor: its failure is the model's own problem, reported as it is.
      if (device === 'cpu' || last) throw err;
      failures.push({ device, error: (err as Error).message ?? String(err) });
    }
  }
  throw new Error('device plan without candidates'); // unreachable: planDevices always ends with the CPU
}
