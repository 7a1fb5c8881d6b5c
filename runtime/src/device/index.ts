// Device selection: which execution provider a model runs on, and the fallback when a GPU fails.
export * from './select.js';
export { CUDA_PROVIDER_FILES, nvidiaGpus, ortBinaryDir, probeDevices } from './probe.js';
export { type DeviceSession, type DeviceSessionSettings, createSessionForDevice } from './open.js';
