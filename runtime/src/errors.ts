// Errors the runtime raises for bad input. Each one says what was wrong, where (the file),
// and what to do, so the CLI and the editor can show it verbatim.

/** A checkpoint file is missing, malformed, or holds something this runtime refuses to load. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    /** The file at fault (absolute or as the user gave it), or the model folder. */
    readonly file: string,
    /** What is wrong, in one sentence. */
    readonly problem: string,
    /** What the user can do about it, if anything. */
    readonly hint?: string,
  ) {
    super(`${file}: ${problem}${hint ? ` (${hint})` : ''}`);
  }
}

/** A caller passed an option or input the runtime cannot honour. */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

/**
 * The device asked for cannot run this model here (its provider, driver or GPU is missing, or the
 * GPU is too small). The fix is another device, not another model.
 */
export class DeviceUnavailableError extends UsageError {
  override readonly name: string = 'DeviceUnavailableError';
}
