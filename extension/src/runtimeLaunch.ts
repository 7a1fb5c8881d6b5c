// How the runtime process is started. The runtime is the bundled `dist/runtime/cli.js rpc`, run by
// the Node that runs the extension host: in desktop VS Code that is Electron's binary, which runs as
// plain Node when ELECTRON_RUN_AS_NODE=1 (VS Code starts its own helpers this way), so no separate
// Node installation is needed; in code-server and remote hosts it is Node itself. The
// `optComplete.runtime.nodePath` setting names another Node (≥ 20) instead, e.g. when a native
// module misbehaves under Electron. No vscode import.

import { join } from 'node:path';

export interface RuntimeLaunch {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface LaunchInputs {
  /** The extension's folder (holds dist/runtime/cli.js). */
  extensionPath: string;
  /** optComplete.runtime.nodePath; '' = the extension host's own executable. */
  nodePath: string;
  execPath: string;
  versions: NodeJS.ProcessVersions;
  env: NodeJS.ProcessEnv;
  /** Extra arguments before the script (tests run the TypeScript sources through tsx). */
  execArgv?: string[];
  /** The runtime entry, relative to extensionPath. */
  script?: string;
}

export function runtimeLaunch(i: LaunchInputs): RuntimeLaunch {
  const env: NodeJS.ProcessEnv = { ...i.env };
  let command = i.nodePath.trim();
  if (command === '') {
    command = i.execPath;
    if (i.versions.electron) env.ELECTRON_RUN_AS_NODE = '1';
  } else {
    delete env.ELECTRON_RUN_AS_NODE;
  }
  const script = join(i.extensionPath, i.script ?? join('dist', 'runtime', 'cli.js'));
  return { command, args: [...(i.execArgv ?? []), script, 'rpc'], env, cwd: i.extensionPath };
}
