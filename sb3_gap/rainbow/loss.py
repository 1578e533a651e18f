"""Rainbow's per-transition loss: the C51 cross-entropy to the projected n-step target, or DQN's scalar loss."""

from __future__ import annotations

from typing import Any

import torch as th
from torch.nn import functional as F

from sb3_gap.rainbow.policies import RainbowNetwork
from sb3_gap.rainbow.projection import categorical_projection


def per_sample_loss(
    q_net: RainbowNetwork, q_net_target: RainbowNetwork, replay_data: Any, gamma: float, double_q: bool, distributional: bool, loss: str
) -> tuple[th.Tensor, th.Tensor]:
    """
    The per-transition loss of a replay batch, and Q(s, a) of the taken actions.

    Target: ``G = Σ_{i<k} γ^i r_{t+i} + γ^k (1 - done) Z(s_{t+k}, a*)``, with
    ``a* = argmax_a Q_online(s_{t+k}, a)`` if ``double_q`` else ``argmax_a Q_target(s_{t+k}, a)``.
    C51: cross-entropy between the projection of G on the support (Bellemare et al. 2017, Eq. 7)
    and the predicted distribution (Hessel et al. 2018, Eq. 3, in the CE form of Dopamine);
    scalar head: Huber or squared error to ``G`` as SB3's DQN.

    :param q_net: The online network
    :param q_net_target: The target network
    :param replay_data: A ``RainbowSamples`` (or SB3 ``ReplayBufferSamples``) batch
    :param gamma: Discount of a one-step batch (n-step batches carry their own ``discounts``)
    :param double_q: The online network picks a*
    :param distributional: C51 head (else scalar Q-values)
    :param loss: The scalar head's loss, ``"huber"`` or ``"mse"``
    :return: (loss per sample (B,), Q of the taken actions (B,), detached)
    """
    actions = replay_data.actions.long().reshape(-1)
    rewards = replay_data.rewards.reshape(-1)
    dones = replay_data.dones.reshape(-1)
    discounts = replay_data.discounts.reshape(-1) if replay_data.discounts is not None else th.full_like(rewards, gamma)
    batch = th.arange(actions.shape[0], device=actions.device)

    out = q_net(replay_data.observations)
    with th.no_grad():
        out_next = q_net_target(replay_data.next_observations)
        if double_q:
            # The online network's s_{t+n} pass stays out of the graph: batching it with s_t under grad would make
            # autograd run the backward over both halves (slower updates, docs/benchmarks_rainbow.md).
            next_actions = q_net.q_values(replay_data.next_observations).argmax(dim=1)
        else:
            next_actions = q_net_target.q_from_output(out_next).argmax(dim=1)
        if distributional:
            next_probs = F.softmax(out_next[batch, next_actions], dim=-1)
            target = categorical_projection(next_probs, rewards, discounts, dones, q_net.support)
        else:
            next_q = out_next[batch, next_actions]
            target = rewards + (1 - dones) * discounts * next_q

    if distributional:
        log_probs = F.log_softmax(out[batch, actions], dim=-1)
        losses = -(target * log_probs).sum(dim=-1)
        q_taken = (log_probs.detach().exp() * q_net.support).sum(dim=-1)
    else:
        current = out[batch, actions]
        if loss == "huber":
            losses = F.smooth_l1_loss(current, target, reduction="none")
        else:
            losses = F.mse_loss(current, target, reduction="none")
        q_taken = current.detach()
    return losses, q_taken
