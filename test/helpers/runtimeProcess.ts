// The runtime process as the extension starts it, but from source (tsx): what the supervisor tests launch.

import { resolve } from 'node:path';
import { runtimeLaunch } from '../../extension/src/runtimeLaunch.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export const sourceLaunch = () =>
  runtimeLaunch({
    extensionPath: REPO_ROOT,
    nodePath: process.execPath,
    execPath: process.execPath,
    versions: process.versions,
    env: process.env,
    execArgv: ['--import', 'tsx'],
    script: 'runtime/src/cli.ts',
  });
