// In-place ordering of candidate token ids by a per-token key, for the warpers that sort (top-p, typical-p).
// Ties are broken by token id so the order is total and matches a stable ascending sort
// (torch.sort(stable=True)); heapsort, so nothing is allocated and there is no recursion.

/** Sorts idx[0..n) ascending by (keys[id], id). */
export function sortIdsAscending(idx: Int32Array, n: number, keys: ArrayLike<number>): void {
  sortIds(idx, n, keys, false);
}

/** Sorts idx[0..n) descending by (keys[id], id): the exact reverse of sortIdsAscending. */
export function sortIdsDescending(idx: Int32Array, n: number, keys: ArrayLike<number>): void {
  sortIds(idx, n, keys, true);
}

function sortIds(idx: Int32Array, n: number, keys: ArrayLike<number>, desc: boolean): void {
  if (n <= 24) {
    // Insertion sort: the common case after top-k is a few dozen ids.
    for (let i = 1; i < n; i++) {
      const id = idx[i]!;
      let j = i - 1;
      while (j >= 0 && later(keys, idx[j]!, id, desc)) {
        idx[j + 1] = idx[j]!;
        j--;
      }
      idx[j + 1] = id;
    }
    return;
  }
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(idx, i, n, keys, desc);
  for (let end = n - 1; end > 0; end--) {
    const top = idx[0]!;
    idx[0] = idx[end]!;
    idx[end] = top;
    siftDown(idx, 0, end, keys, desc);
  }
}

/** Whether id a belongs after id b in the requested order. */
function later(keys: ArrayLike<number>, a: number, b: number, desc: boolean): boolean {
  const ka = keys[a]!;
  const kb = keys[b]!;
  if (ka !== kb) return desc ? ka < kb : ka > kb;
  return desc ? a < b : a > b;
}

/** Max-heap (by `later`) sift-down over idx[0..size). */
function siftDown(idx: Int32Array, at: number, size: number, keys: ArrayLike<number>, desc: boolean): void {
  const id = idx[at]!;
  for (;;) {
    let child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && later(keys, idx[child + 1]!, idx[child]!, desc)) child++;
    if (!later(keys, idx[child]!, id, desc)) break;
    idx[at] = idx[child]!;
    at = child;
  }
  idx[at] = id;
}
