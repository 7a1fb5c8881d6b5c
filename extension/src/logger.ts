// The logging surface the vscode-free modules need; VS Code's LogOutputChannel satisfies it, and
// tests pass a recorder. No vscode import.

export interface Logger {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string | Error): void;
}

/** A logger that keeps lines in memory (tests, and the tail shown when the runtime gives up). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (m: string | Error) => void lines.push(`${level}: ${m instanceof Error ? m.message : m}`);
  return { lines, trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
