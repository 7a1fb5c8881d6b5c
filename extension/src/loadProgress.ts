// Reading the runtime's `opt/loadProgress` messages ("downloading model.safetensors: 12.0/250.5
// MiB", "loading /path") into something a progress bar can show. No vscode import.

export interface LoadProgressInfo {
  message: string;
  downloading: boolean;
  /** The file being downloaded. */
  file?: string;
  /** 0…1 of that file, when its size is known. */
  fraction?: number;
}

const DOWNLOADING = /^downloading (.+): (\d+(?:\.\d+)?)(?:\/(\d+(?:\.\d+)?))? MiB$/;

export function parseLoadProgress(message: string): LoadProgressInfo {
  const m = DOWNLOADING.exec(message.trim());
  if (!m) return { message, downloading: false };
  const received = Number(m[2]);
  const total = m[3] === undefined ? undefined : Number(m[3]);
  const fraction = total && total > 0 ? Math.min(1, received / total) : undefined;
  return { message, downloading: true, file: m[1], fraction };
}

/** Short status-bar form: "42% model.safetensors", "loading". */
export function shortProgress(p: LoadProgressInfo | undefined): string {
  if (!p) return 'starting';
  if (p.downloading) return p.fraction !== undefined ? `${Math.round(p.fraction * 100)}%` : 'downloading';
  return /^loading/.test(p.message) ? 'loading' : (p.message.split(' ')[0] ?? 'loading');
}
