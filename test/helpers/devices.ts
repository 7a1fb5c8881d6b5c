// What this machine can run, decided as the runtime decides it (runtime/src/device/select.ts):
// tests of a refusal skip where the device is in fact available.

import { probeDevices } from '../../runtime/src/device/probe.js';
import { planDevices } from '../../runtime/src/device/select.js';
import type { DeviceChoice } from '../../runtime/src/device/select.js';

/** True when the runtime would refuse an explicit `device` here (its provider, driver or GPU is missing). */
export function deviceRefused(device: DeviceChoice): boolean {
  try {
    planDevices(device, probeDevices());
    return false;
  } catch {
    return true;
  }
}
