"""A sum tree for proportional prioritized replay (Schaul et al. 2016, Sec. 3.3 and Appendix B.2.1).

Written by hand because neither SB3 nor sb3-contrib ship one, and the well-known implementations
(OpenAI baselines' ``SegmentTree``, Dopamine's ``SumTree``) walk the tree once per sample in Python.
Here every operation is vectorized over a batch of indices with numpy: an update or a search costs
``O(B log N)`` work in ``log N`` numpy calls, independent of the batch size ``B``.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """
    A complete binary tree over ``capacity`` non-negative leaves; each inner node holds the sum of its
    two children, so the root holds the total and a prefix-sum search descends in ``log2`` steps.

    Array layout (heap order): node 1 is the root, node ``i`` has children ``2i`` and ``2i + 1``,
    leaf ``j`` lives at node ``n_leaves + j`` where ``n_leaves`` is ``capacity`` rounded up to a power
    of two (the padding leaves stay at 0 and are never returned by :meth:`find`).
    Inner nodes are recomputed from their children on every update (never by adding deltas), so the
    tree never drifts from the exact sum of its leaves through floating-point error accumulation.

    :param capacity: Number of leaves (transitions)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.depth = max(int(np.ceil(np.log2(self.capacity))), 0)
        self.n_leaves = 1 << self.depth
        # float64: sums of ~1e6 priorities keep ~10 significant digits in the smallest leaves
        self.nodes = np.zeros(2 * self.n_leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self.nodes[1])  # with a single leaf, the leaf is the root

    def get(self, indices: np.ndarray) -> np.ndarray:
        """
        :param indices: Leaf indices in ``[0, capacity)``
        :return: The leaf values
        """
        return self.nodes[self.n_leaves + np.asarray(indices, dtype=np.int64)]

    def leaves(self) -> np.ndarray:
        """A view of all ``capacity`` leaf values."""
        return self.nodes[self.n_leaves : self.n_leaves + self.capacity]

    def update(self, indices: np.ndarray, values: np.ndarray | float) -> None:
        """
        Set leaves and recompute their ancestors, one numpy call per level.
        With duplicate indices the last value wins (numpy assignment order); parents written twice
        receive the same sum, so duplicates are harmless.

        :param indices: Leaf indices in ``[0, capacity)``
        :param values: Non-negative values (scalar or one per index)
        """
        self.set_leaves(indices, values)
        self.propagate(indices)

    def set_leaves(self, indices: np.ndarray, values: np.ndarray | float) -> None:
        """
        Set leaves *without* updating their ancestors: several cheap writes can then share one
        :meth:`propagate`. The tree is inconsistent until :meth:`propagate` is called on these indices.

        :param indices: Leaf indices in ``[0, capacity)``
        :param values: Non-negative values (scalar or one per index)
        """
        self.nodes[np.asarray(indices, dtype=np.int64) + self.n_leaves] = values

    def propagate(self, indices: np.ndarray) -> None:
        """
        Recompute the ancestors of the given leaves from their children, bottom-up.

        :param indices: Leaf indices in ``[0, capacity)``
        """
        nodes = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1)) + self.n_leaves
        if nodes.size == 0:
            return
        for _ in range(self.depth):
            nodes = nodes // 2
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, values: np.ndarray) -> np.ndarray:
        """
        Prefix-sum search: for each ``v`` the leaf ``j`` with ``sum(leaves[:j]) <= v < sum(leaves[:j+1])``.
        Values are clipped into ``[0, total)``. Leaves with value 0 are never returned as long as the total
        is positive (a float round-off that still lands on one is redirected, see below).

        :param values: Query values, shape ``(B,)``
        :return: Leaf indices, shape ``(B,)``
        """
        total = self.total
        if total <= 0.0:
            raise ValueError("SumTree.find: all leaves are 0, nothing can be sampled")
        values = np.clip(np.asarray(values, dtype=np.float64).reshape(-1), 0.0, np.nextafter(total, 0.0))
        idx = np.ones(values.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * idx]
            go_right = values >= left
            values = np.where(go_right, values - left, values)
            idx = 2 * idx + go_right
        leaves = idx - self.n_leaves
        # Rounding in the sums can (very rarely) send a query into a zero leaf next to the true one:
        # move it to the nearest positive leaf on its left, else on its right.
        bad = (leaves >= self.capacity) | (self.nodes[np.minimum(idx, 2 * self.n_leaves - 1)] <= 0.0)
        if bad.any():
            positive = np.flatnonzero(self.leaves() > 0.0)
            pos = np.searchsorted(positive, leaves[bad], side="right") - 1
            leaves[bad] = positive[np.clip(pos, 0, len(positive) - 1)]
        return leaves
