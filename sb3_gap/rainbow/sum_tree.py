"""A sum tree for proportional prioritized replay (Schaul et al. 2016, Sec. 3.3 and Appendix B.2.1).

Written by hand because neither SB3 nor sb3-contrib ship one, and the well-known implementations
(OpenAI baselines' ``SegmentTree``, Dopamine's ``SumTree``) walk the tree once per sample in Python.
Here every operation is vectorized over a batch of indices with numpy, one level at a time. The tree is
``branching``-ary (16 by default) rather than binary: 1M leaves need 5 levels instead of 20, and a level costs
a handful of numpy calls whatever its width, so a search or an update of a batch makes ~4× fewer numpy calls
(which, for a batch of 32, is what the time goes to: docs/benchmarks_speed.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_gap.checks import Refused, check_int


class SumTree:
    """
    A tree over ``capacity`` non-negative leaves whose inner nodes each hold the sum of their ``branching``
    children, so the root holds the total and a prefix-sum search descends one level at a time.

    Layout: :attr:`levels` lists the levels leaves first, root (one node) last; node ``i`` of a level has the
    children ``i * branching ... i * branching + branching - 1`` in the level below. Each level but the root
    is padded with zero nodes to a multiple of ``branching``; the padding is never returned by :meth:`find`.
    All levels are views of one flat array, :attr:`nodes`. Inner nodes are recomputed from their children
    (never by adding deltas), so the tree never drifts from the exact sum of its leaves through floating-point
    error accumulation; they are recomputed lazily, at the first read after an :meth:`update` (call :meth:`flush`
    before reading :attr:`levels` or :attr:`nodes` directly).

    :param capacity: Number of leaves (transitions)
    :param branching: Children per inner node (>= 2)
    """

    def __init__(self, capacity: int, branching: int = 16) -> None:
        if capacity < 1:
            raise Refused(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.branching = check_int("branching", branching, minimum=2)
        sizes, n = [], self.capacity
        while True:  # each level padded to a multiple of branching; the level above has one node per group
            padded = -(-n // self.branching) * self.branching
            sizes.append(padded)
            n = padded // self.branching
            if n == 1:
                break
        sizes.append(1)
        self.sizes = sizes
        # float64: sums of ~1e6 priorities keep ~10 significant digits in the smallest leaves
        self.nodes = np.zeros(sum(sizes), dtype=np.float64)
        self._stale: list[np.ndarray] = []  # leaves set since the sums were last recomputed (see update)
        self._make_views()

    def _make_views(self) -> None:
        ends = np.cumsum(self.sizes)
        self.levels = [self.nodes[end - size : end] for size, end in zip(self.sizes, ends)]
        # (groups, branching) views of every level below the root: row i holds the children of node i above
        self._groups = [level.reshape(-1, self.branching) for level in self.levels[:-1]]

    def __getstate__(self) -> dict[str, Any]:
        self.flush()
        state = self.__dict__.copy()
        del state["levels"], state["_groups"]  # views of nodes: rebuilt on load (pickling would copy them)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "branching" not in state:  # a binary heap-ordered tree pickled before the k-ary layout: rebuild it
            n_leaves, capacity = state["n_leaves"], state["capacity"]
            self.__init__(capacity)  # type: ignore[misc]
            self.update(np.arange(capacity), state["nodes"][n_leaves : n_leaves + capacity])
            self.flush()
            return
        self.__dict__.update(state)
        self._make_views()

    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        self.flush()
        return float(self.levels[-1][0])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """
        :param indices: Leaf indices in ``[0, capacity)``
        :return: The leaf values
        """
        return self.levels[0][np.asarray(indices, dtype=np.int64)]

    def leaves(self) -> np.ndarray:
        """A view of all ``capacity`` leaf values."""
        return self.levels[0][: self.capacity]

    def update(self, indices: np.ndarray, values: np.ndarray | float) -> None:
        """
        Set leaves; their ancestors are recomputed at the next read of the sums (:attr:`total`, :meth:`find`,
        :meth:`flush`), together with those of every leaf set since the last read: a replay that writes one or two
        leaves per env step and samples every 4 steps recomputes the ancestors once per sample, not once per write.
        With duplicate indices the last value wins (numpy assignment order); parents written twice
        receive the same sum, so duplicates are harmless.

        :param indices: Leaf indices in ``[0, capacity)``
        :param values: Non-negative values (scalar or one per index)
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.levels[0][indices] = values
        self._stale.append(indices)
        if len(self._stale) > 4096:  # a long warm-up without reads: keep the list short
            self.flush()

    def flush(self) -> None:
        """Recompute the ancestors of the leaves set since the last read, bottom-up, one gather and sum per level."""
        if not self._stale:
            return
        nodes = np.concatenate(self._stale) if len(self._stale) > 1 else self._stale[0]
        self._stale = []
        for groups, parents in zip(self._groups, self.levels[1:]):
            nodes = nodes // self.branching
            parents[nodes] = groups[nodes].sum(axis=1)

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
            raise Refused("SumTree.find: all leaves are 0, nothing can be sampled")
        values = np.clip(np.asarray(values, dtype=np.float64).reshape(-1), 0.0, np.nextafter(total, 0.0))
        rows = np.arange(values.size)
        idx = np.zeros(values.size, dtype=np.int64)
        last = self.branching - 1
        for groups in reversed(self._groups):
            # a padding node of the level above (reached only through round-off) may have no children: take the last group
            np.minimum(idx, len(groups) - 1, out=idx)
            children = groups[idx]  # (B, branching)
            ends = np.cumsum(children, axis=1)  # prefix sum up to and including each child
            # the child whose [start, end) holds v: the number of children that end at or before v
            child = np.minimum((ends <= values[:, None]).sum(axis=1), last)
            values = values - (ends[rows, child] - children[rows, child])
            idx = idx * self.branching + child
        # Rounding in the sums can (very rarely) send a query into a zero leaf next to the true one:
        # move it to the nearest positive leaf on its left, else on its right.
        bad = (idx >= self.capacity) | (self.levels[0][idx] <= 0.0)
        if bad.any():
            positive = np.flatnonzero(self.leaves() > 0.0)
            pos = np.searchsorted(positive, idx[bad], side="right") - 1
            idx[bad] = positive[np.clip(pos, 0, len(positive) - 1)]
        return idx
