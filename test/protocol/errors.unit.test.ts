// The error registry (protocol/errors.ts): every kind survives each boundary as itself, and the
// mappers of the worker, the JSON-RPC server, `opt serve` and the CLI read one table.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from 'vscode-jsonrpc';
import {
  CancelledError,
  DeviceUnavailableError,
  ERRORS,
  EngineBusyError,
  EngineUnavailableError,
  type ErrorName,
  SupersededError,
  UNKNOWN,
  UsageError,
  WrongModelTypeError,
  fromRpcError,
  isCancellation,
  kindOf,
  reviveError,
  serializeError,
  toRpcError,
} from '../../protocol/errors.js';
import { RuntimeErrorCodes } from '../../protocol/protocol.js';
import { toApiError } from '../../runtime/src/server/apiError.js';
import { CheckpointError, FileAccessError } from '../../runtime/src/errors.js';

const samples: Record<ErrorName, () => Error> = {
  CancelledError: () => new CancelledError('the user cancelled'),
  SupersededError: () => new SupersededError('a newer request for doc-1'),
  AbortError: () => new DOMException('The operation was aborted', 'AbortError'),
  EngineBusyError: () => new EngineBusyError('16 requests are queued'),
  EngineUnavailableError: () => new EngineUnavailableError('the runtime is stopped'),
  WrongModelTypeError: () => new WrongModelTypeError('needs OPTForSequenceClassification', 'classify', 'OPTForCausalLM'),
  UsageError: () => new UsageError('top_p must be in (0, 1]'),
  DeviceUnavailableError: () => new DeviceUnavailableError('no CUDA provider'),
  FileAccessError: () => new FileAccessError('/x/cache', 'ENOTDIR', 'part of this path is a file where a folder is needed'),
  CheckpointError: () => new CheckpointError('/m/config.json', 'not JSON'),
};

describe('the error registry', () => {
  test('every registered name has a sample, and every sample is found by its name', () => {
    assert.deepEqual(Object.keys(samples).sort(), Object.keys(ERRORS).sort());
    for (const [name, make] of Object.entries(samples)) assert.equal(kindOf(make()), ERRORS[name as ErrorName], name);
  });

  test('an error crosses the worker boundary as its kind, with its message', () => {
    for (const make of Object.values(samples)) {
      const original = make();
      const back = reviveError(structuredClone(serializeError(original)));
      assert.equal(back.message, original.message);
      // A file the OS refused keeps its path on the side that raised it; it arrives as bad input.
      assert.equal(kindOf(back), original instanceof FileAccessError ? ERRORS.UsageError : kindOf(original), original.name);
      assert.equal(isCancellation(back), isCancellation(original));
    }
    // The runtime's subclasses arrive as the protocol's class they extend.
    assert.ok(reviveError(serializeError(samples.FileAccessError())) instanceof UsageError);
    assert.ok(reviveError(serializeError(samples.DeviceUnavailableError())) instanceof DeviceUnavailableError);
    assert.ok(reviveError(serializeError(samples.SupersededError())) instanceof CancelledError);
  });

  test('an unknown name survives as a plain Error that keeps it, and maps to the internal-failure kind', () => {
    const back = reviveError({ name: 'RangeError', message: 'offset out of range' });
    assert.equal(back.name, 'RangeError');
    assert.equal(kindOf(back), UNKNOWN);
    assert.equal(kindOf('a string'), UNKNOWN);
    assert.equal(kindOf(undefined), UNKNOWN);
    assert.deepEqual(serializeError('plain text'), { name: 'Error', message: 'plain text' });
    assert.equal(kindOf({ name: 'constructor' }), UNKNOWN, 'no prototype keys');
  });

  test('cancellations are the cancel kinds only', () => {
    const cancels = Object.entries(samples)
      .filter(([, make]) => isCancellation(make()))
      .map(([name]) => name)
      .sort();
    assert.deepEqual(cancels, ['AbortError', 'CancelledError', 'SupersededError']);
  });

  test('JSON-RPC: each kind has its reply code, and the code comes back as the error the editor handles', () => {
    assert.deepEqual(toRpcError(samples.EngineBusyError()), { code: RuntimeErrorCodes.Busy, message: '16 requests are queued' });
    assert.deepEqual(toRpcError(samples.AbortError()), { code: RuntimeErrorCodes.Cancelled, message: 'cancelled' });
    assert.equal(toRpcError(samples.SupersededError()).code, RuntimeErrorCodes.Cancelled);
    assert.equal(toRpcError(samples.UsageError()).code, ErrorCodes.InvalidParams);
    assert.equal(toRpcError(samples.FileAccessError()).code, ErrorCodes.InvalidParams);
    assert.equal(toRpcError(samples.DeviceUnavailableError()).code, RuntimeErrorCodes.DeviceUnavailable);
    assert.equal(toRpcError(samples.WrongModelTypeError()).code, RuntimeErrorCodes.WrongModelType);
    assert.equal(toRpcError(new TypeError('x is undefined')).code, RuntimeErrorCodes.GenerationFailed);

    assert.ok(fromRpcError(RuntimeErrorCodes.Cancelled, 'superseded') instanceof CancelledError);
    assert.ok(fromRpcError(RuntimeErrorCodes.Busy, 'full') instanceof EngineBusyError);
    assert.ok(fromRpcError(RuntimeErrorCodes.NotInitialized, 'send initialize') instanceof EngineUnavailableError);
    assert.ok(fromRpcError(RuntimeErrorCodes.WrongModelType, 'needs a classifier') instanceof WrongModelTypeError);
    assert.ok(fromRpcError(ErrorCodes.InvalidParams, 'bad top_p') instanceof UsageError);
    const failed = fromRpcError(RuntimeErrorCodes.GenerationFailed, 'the model failed');
    assert.equal(failed.constructor, Error);
    assert.equal(failed.message, 'the model failed');
  });

  test('HTTP: busy is 429 with retry-after, bad input 400, the wrong head 400, anything else a short 500', () => {
    const busy = toApiError(samples.EngineBusyError());
    assert.deepEqual([busy.status, busy.type, busy.code, busy.headers], [429, 'rate_limit_error', 'server_busy', { 'retry-after': '1' }]);
    assert.equal(toApiError(samples.UsageError()).status, 400);
    assert.equal(toApiError(samples.WrongModelTypeError()).status, 400);
    const internal = toApiError(new Error('line one\n    at stack frame'));
    assert.deepEqual([internal.status, internal.message], [500, 'internal server error: line one']);
  });

  test('the CLI exits 2 (the caller is at fault) for usage, checkpoint, file and wrong-head errors only', () => {
    const faults = Object.entries(samples)
      .filter(([, make]) => kindOf(make()).userFault)
      .map(([name]) => name)
      .sort();
    assert.deepEqual(faults, ['CheckpointError', 'DeviceUnavailableError', 'FileAccessError', 'UsageError', 'WrongModelTypeError']);
    assert.equal(kindOf(new Error('bug')).userFault, false);
  });
});
