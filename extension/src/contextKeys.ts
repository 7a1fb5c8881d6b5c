// The `when`-clause keys this extension sets (commandIds.ts lists them). Each is sent to VS Code
// only when its value changes (runtime state changes set the same keys at every download progress
// tick), and the values are kept for the debug state, since VS Code cannot be asked for them.

import * as vscode from 'vscode';
import { BuiltinCommands, type ContextKeys } from './commandIds.js';

export type ContextKey = (typeof ContextKeys)[keyof typeof ContextKeys];

export class ContextKeyStore {
  private readonly _values: Partial<Record<ContextKey, unknown>> = {};

  set(key: ContextKey, value: unknown): Thenable<unknown> {
    if (key in this._values && this._values[key] === value) return Promise.resolve();
    this._values[key] = value;
    return vscode.commands.executeCommand(BuiltinCommands.setContext, key, value);
  }

  /** The keys as last set. */
  snapshot(): Record<string, unknown> {
    return { ...this._values };
  }
}
