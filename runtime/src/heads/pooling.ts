// Sentence embeddings from hidden states: the mean over a row's real tokens, or its last real token.
// Padding (attention mask 0) never contributes, on whichever side it sits.
//
// Legend: B batch, S tokens, W the states' width (E for the last hidden state, D for inner layers).

export type Pooling = 'mean' | 'last';
export const POOLINGS: readonly Pooling[] = ['mean', 'last'];

/** [B, S, W] states and a [B, S] 0/1 mask → B vectors of W. A row with no tokens pools to zeros. */
export function pool(
  states: Float32Array,
  mask: ArrayLike<number | bigint>,
  batch: number,
  width: number,
  pooling: Pooling,
): Float32Array[] {
  const s = mask.length / batch;
  const out: Float32Array[] = [];
  for (let r = 0; r < batch; r++) {
    const v = new Float32Array(width);
    const on = (j: number) => Number(mask[r * s + j]!) !== 0;
    if (pooling === 'last') {
      let at = -1;
      for (let j = 0; j < s; j++) if (on(j)) at = j;
      if (at >= 0) v.set(states.subarray((r * s + at) * width, (r * s + at + 1) * width));
    } else {
      const acc = new Float64Array(width);
      let count = 0;
      for (let j = 0; j < s; j++) {
        if (!on(j)) continue;
        count++;
        const base = (r * s + j) * width;
        for (let k = 0; k < width; k++) acc[k]! += states[base + k]!;
      }
      for (let k = 0; k < width; k++) v[k] = count > 0 ? acc[k]! / count : 0;
    }
    out.push(v);
  }
  return out;
}
