// Top-k selection over a logits row without sorting the whole vocabulary.

export interface Scored {
  index: number;
  value: number;
}

/** The k largest values of `row`, largest first; ties keep the lower index first. */
export function topK(row: ArrayLike<number>, k: number): Scored[] {
  const best: Scored[] = [];
  for (let i = 0; i < row.length; i++) {
    const value = row[i]!;
    if (best.length === k && !(value > best[k - 1]!.value)) continue;
    let at = best.length;
    while (at > 0 && value > best[at - 1]!.value) at--;
    best.splice(at, 0, { index: i, value });
    if (best.length > k) best.pop();
  }
  return best;
}
