"""Training-time snippet sampling, as in the authors' data loader.

A video of T snippets is cut into ``num_snippets`` equal bins (bin i starts at i*T/N); one
random index is drawn in each bin, so the sample keeps temporal order and covers the whole
video. Videos shorter than N repeat indices. Two details of the authors' rule are kept
because they shape which snippets are seen: a bin's draw includes the first index of the next
bin (``range(int(b_i), int(b_{i+1}) + 1)``), and T == N takes every snippet once.
"""

from __future__ import annotations

import numpy as np


def sample_snippet_indices(length: int, num_snippets: int, rng: np.random.Generator) -> np.ndarray:
    """``num_snippets`` sorted-by-bin snippet indices in [0, length) for one training video."""
    if length <= 0:
        raise ValueError(f"cannot sample snippets from a video with {length} snippets")
    N = int(num_snippets)
    if N == length:
        return np.arange(N, dtype=np.int64)
    bounds = np.arange(N) * length / N
    lo = bounds.astype(np.int64)  # bounds are >= 0, so truncation is floor
    hi = np.empty(N, dtype=np.int64)
    hi[:-1] = lo[1:]  # inclusive upper end: the next bin's first index
    hi[-1] = length - 1  # the last bin runs to the end of the video
    u = rng.random(N)
    return lo + np.minimum((u * (hi - lo + 1)).astype(np.int64), hi - lo)
