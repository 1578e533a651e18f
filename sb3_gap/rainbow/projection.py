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

    Written loop-free against Eq. 7 of Bellemare, Dabney & Munos (2017), "A Distributional
    Perspective on Reinforcement Learning":

    .. math::
        (\\Phi \\hat{T} Z_\\theta(x, a))_i = \\sum_j \\left[ 1 - \\frac{|[\\hat{T} z_j]_{V_{min}}^{V_{max}} - z_i|}
        {\\Delta z} \\right]_0^1 p_j(x', \\pi(x'))

    with :math:`\\hat{T} z_j = r + \\gamma^k z_j` (``discounts`` holds :math:`\\gamma^k`, k being the
    length of the possibly truncated n-step window) and :math:`\\hat{T} z_j = r` at terminal states.
    Unlike the floor/ceil form of Algorithm 1, this triangular-kernel form needs no special case
    when :math:`b_j` lands exactly on an atom, and it is one batched matrix product:
    ``O(B N^2)`` multiply-adds, which for N = 51 atoms is cheaper on CPU and GPU than a scatter.

    :param next_probs: (B, N) probabilities :math:`p_j(x', a^*)` of the target distribution
    :param rewards: (B,) or (B, 1) (n-step discounted) rewards
    :param discounts: (B,) or (B, 1) bootstrap discounts :math:`\\gamma^k`
    :param dones: (B,) or (B, 1) 1.0 where the window ended in a true termination (no bootstrap)
    :param support: (N,) the atoms :math:`z_i`, evenly spaced from ``v_min`` to ``v_max``
    :return: (B, N) the projected target probabilities (each row sums to 1)
    """
    n_atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (n_atoms - 1)
    rewards = rewards.reshape(-1, 1)
    gamma_k = (discounts.reshape(-1, 1) * (1.0 - dones.reshape(-1, 1))).to(support.dtype)
    # [T z_j] clipped to [v_min, v_max]: (B, N_j)
    target_atoms = (rewards + gamma_k * support.view(1, -1)).clamp(min=v_min, max=v_max)
    # [1 - |[T z_j] - z_i| / Δz]_0^1 : (B, N_i, N_j)
    kernel = (1.0 - (target_atoms.unsqueeze(1) - support.view(1, -1, 1)).abs() / delta_z).clamp(min=0.0, max=1.0)
    # Σ_j kernel_ij p_j
    return th.bmm(kernel, next_probs.unsqueeze(-1).to(kernel.dtype)).squeeze(-1)
