// Where one tensor lives on disk. Both checkpoint formats (safetensors and PyTorch's zip
// container, whose entries are stored uncompressed) reduce to "this many bytes at this offset
// of this file", so weights are read lazily, one tensor at a time, with positioned reads.

/** Storage dtypes found in OPT checkpoints; names follow safetensors' spelling. */
export type StorageDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<StorageDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorRef {
  /** Key as stored in the checkpoint, e.g. `model.decoder.layers.0.fc1.weight`. */
  name: string;
  dtype: StorageDtype;
  shape: number[];
  /** The file holding the bytes. */
  file: string;
  /** Absolute byte offset of the first element in `file`. */
  offset: number;
  /** Byte length: product(shape) * DTYPE_BYTES[dtype]; data is contiguous, little-endian, row-major. */
  length: number;
}
