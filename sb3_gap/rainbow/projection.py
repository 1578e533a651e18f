"""The C51 projection of a distributional Bellman target onto a fixed support (Bellemare et al. 2017)."""

from __future__ import annotations

import torch as th


def categorical_projection(
    next_probs: th.Tensor,
    rewards: th.Tensor,
    discounts: th.Tensor,
    dones: th.Tensor,
    support: th.Tensor,
) -> th.Tensor:
    """
    Project the target distribution of ``R + discount * (1 - done) * Z(x', a*)`` onto ``support``.

    Computed loop-free. Dopamine (``agents/rainbow/rainbow_agent.py``, ``project_distribution``) evaluates Eq. 7 of
    Bellemare, Dabney & Munos (2017), "A Distributional Perspective on Reinforcement Learning", as an
    ``O(B N^2)`` clipped kernel:

    .. math::
        (\\Phi \\hat{T} Z_\\theta(x, a))_i = \\sum_j \\left[ 1 - \\frac{|[\\hat{T} z_j]_{V_{min}}^{V_{max}} - z_i|}
        {\\Delta z} \\right]_0^1 p_j(x', \\pi(x'))

    with :math:`\\hat{T} z_j = r + \\gamma^k z_j` (``discounts`` holds :math:`\\gamma^k`, k being the
    length of the possibly truncated n-step window) and :math:`\\hat{T} z_j = r` at terminal states.
    For each ``j`` the kernel has at most two non-zero entries, at the atoms ``l = floor(b_j)`` and ``l + 1``
    around ``b_j = ([T z_j] - V_min) / Δz``, with weights ``1 - (b_j - l)`` and ``b_j - l``; here ``l`` is capped
    at ``N - 2`` so that ``b_j = N - 1`` (and any atom hit exactly) needs no special case, and the mass goes to
    the two atoms with two ``scatter_add_`` calls: the same numbers in ``O(B N)``, with fewer and smaller
    tensor ops (a cheaper Rainbow update on CPU: docs/benchmarks_speed.md).
    ``tests/test_rainbow.py`` checks it against a brute-force Algorithm 1.

    :param next_probs: (B, N) probabilities :math:`p_j(x', a^*)` of the target distribution
    :param rewards: (B,) or (B, 1) (n-step discounted) rewards
    :param discounts: (B,) or (B, 1) bootstrap discounts :math:`\\gamma^k`
    :param dones: (B,) or (B, 1) 1.0 where the window ended in a true termination (no bootstrap)
    :param support: (N,) the atoms :math:`z_i`, evenly spaced from ``v_min`` to ``v_max``
    :return: (B, N) the projected target probabilities (each row sums to 1)
    """
    n_atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    gamma_k = (discounts.reshape(-1, 1) * (1.0 - dones.reshape(-1, 1))).to(support.dtype)
    # b_j: where [T z_j], clipped to [v_min, v_max], falls on the atom grid, in units of Δz: (B, N_j)
    position = (th.addcmul(rewards.reshape(-1, 1).to(support.dtype), gamma_k, support) - v_min).mul_((n_atoms - 1) / (v_max - v_min))
    position.clamp_(min=0.0, max=n_atoms - 1)
    lower = position.floor().clamp_(max=n_atoms - 2)
    upper_weight = position - lower  # the share of p_j that goes to atom l + 1; 1 - it goes to atom l
    lower_index = lower.long()
    probs = next_probs.to(support.dtype)
    projected = th.zeros_like(probs)
    projected.scatter_add_(1, lower_index, probs * (1.0 - upper_weight))
    projected.scatter_add_(1, lower_index + 1, probs * upper_weight)
    return projected
