// Block-wise symmetric weight quantization in the layout of onnxruntime's MatMulNBits
// (com.microsoft): for W [N, K] (PyTorch's Linear layout, out × in), each row is cut into
// blocks of `blockSize` along K; each block stores one float scale and `bits`-bit codes
// offset by the default zero point 2^(bits-1), 4-bit codes packed two per byte, low nibble first.

export interface QuantizedMatrix {
  bits: 4 | 8;
  blockSize: number;
  n: number;
  k: number;
  /** uint8 [N, kBlocks, blockSize * bits / 8] */
  codes: Uint8Array;
  /** float [N * kBlocks] */
  scales: Float32Array;
}

export function blocksPerRow(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** Quantizes W [n, k] (row-major). Pure; the caller owns both arrays. */
export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: 4 | 8, blockSize: number): QuantizedMatrix {
  if (w.length !== n * k) throw new Error(`quantizeBlockwise: ${w.length} values for [${n}, ${k}]`);
  const kBlocks = blocksPerRow(k, blockSize);
  const bytesPerBlock = (blockSize * bits) / 8;
  const codes = new Uint8Array(n * kBlocks * bytesPerBlock);
  const scales = new Float32Array(n * kBlocks);
  const zero = 1 << (bits - 1);
  const qmax = zero - 1; // symmetric: codes span zero ± qmax
  const maxCode = (1 << bits) - 1;
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < kBlocks; b++) {
      const start = row * k + b * blockSize;
      const len = Math.min(blockSize, k - b * blockSize);
      let absmax = 0;
      for (let i = 0; i < len; i++) absmax = Math.max(absmax, Math.abs(w[start + i]!));
      const scale = absmax / qmax;
      const inv = scale > 0 ? 1 / scale : 0;
      scales[row * kBlocks + b] = scale;
      const base = (row * kBlocks + b) * bytesPerBlock;
      for (let i = 0; i < blockSize; i++) {
        const q = i < len ? Math.min(maxCode, Math.max(0, Math.round(w[start + i]! * inv) + zero)) : zero;
        if (bits === 8) codes[base + i] = q;
        else codes[base + (i >> 1)]! |= i & 1 ? q << 4 : q;
      }
    }
  }
  return { bits, blockSize, n, k, codes, scales };
}

/** The float values MatMulNBits computes with (for tests and error bounds). */
export function dequantizeBlockwise(q: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = q;
  const kBlocks = blocksPerRow(k, blockSize);
  const bytesPerBlock = (blockSize * bits) / 8;
  const zero = 1 << (bits - 1);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let j = 0; j < k; j++) {
      const b = Math.floor(j / blockSize),
        i = j % blockSize;
      const byte = q.codes[(row * kBlocks + b) * bytesPerBlock + (bits === 8 ? i : i >> 1)]!;
      const code = bits === 8 ? byte : i & 1 ? byte >> 4 : byte & 15;
      out[row * k + j] = (code - zero) * q.scales[row * kBlocks + b]!;
    }
  }
  return out;
}
