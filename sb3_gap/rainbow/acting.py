"""How a Rainbow acts: ε-greedy actions with the training ε (Dopamine's linearly decaying schedule, or SB3's), the
evaluation ε (:attr:`~RainbowActing.eval_epsilon`) and noisy nets' noise."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_gap.algo_args import ALGO_ARG_BOUNDS
from sb3_gap.rainbow.policies import RainbowPolicy


def check_epsilon(name: str, epsilon: Any) -> None:
    """None or a probability, the bound of Rainbow's ``eval_epsilon``; raise a one-line ``ValueError`` naming the bad value."""
    ALGO_ARG_BOUNDS["eval_epsilon"].check(name, epsilon)


def dopamine_epsilon(num_timesteps: int, learning_starts: int, exploration_steps: int, initial_eps: float, final_eps: float) -> float:
    """
    Dopamine's ``linearly_decaying_epsilon``: ``initial_eps`` during the warm-up, then linear to ``final_eps`` over
    ``exploration_steps`` env steps, then constant.

    :param num_timesteps: Env steps so far
    :param learning_starts: Env steps of the warm-up
    :param exploration_steps: Env steps of the decay (0: ``final_eps`` right after the warm-up)
    :param initial_eps: ε of the warm-up
    :param final_eps: ε after the decay
    """
    done = max(0, num_timesteps - learning_starts)
    frac = 1.0 if exploration_steps == 0 else min(1.0, done / exploration_steps)
    return initial_eps + frac * (final_eps - initial_eps)


class RainbowActing(OffPolicyAlgorithm):
    """
    The acting half of :class:`~sb3_gap.rainbow.Rainbow` (which documents the arguments): ε-greedy :meth:`predict`,
    the training ε schedule and the evaluation ε, checked whenever it is set.

    Evaluation (``deterministic=True``) draws its ε coin and random actions from its own generator, seeded from the
    model's seed by :meth:`set_random_seed`; training draws from numpy's global stream and the action space, as SB3's
    DQN does. So evaluating, with any ε, never changes what training samples: a run that evaluates with ε > 0 trains
    exactly as one that evaluates greedily or not at all.
    """

    policy: RainbowPolicy
    noisy: bool
    exploration_steps: int
    exploration_initial_eps: float
    exploration_final_eps: float
    exploration_schedule: Any
    exploration_rate: float

    @property
    def eval_epsilon(self) -> float | None:
        """ε of greedy (``deterministic=True``) actions, None for none; a probability, checked when set."""
        # Kept in the instance dict under its own name, where SB3's save, the Hub's pickle-free files and
        # models saved before this was a property keep it; absent (None) in models older than the attribute.
        return self.__dict__.get("eval_epsilon")

    @eval_epsilon.setter
    def eval_epsilon(self, epsilon: float | None) -> None:
        check_epsilon("eval_epsilon", epsilon)
        self.__dict__["eval_epsilon"] = epsilon

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        SB3's ``set_random_seed`` (numpy, torch, Python, the action space), and a new evaluation generator seeded
        with ``seed`` (from the OS's entropy when None).

        :param seed: The seed
        """
        super().set_random_seed(seed)
        self._eval_rng = np.random.default_rng(seed)

    def _evaluation_rng(self) -> np.random.Generator:
        """The generator of evaluation's ε draws; a model unpickled whole from before it existed gets one from its seed."""
        if "_eval_rng" not in self.__dict__:
            self._eval_rng = np.random.default_rng(self.seed)
        return self._eval_rng

    def _exploration_eps(self) -> float:
        """Training's ε at the current step."""
        if self.noisy:
            return 0.0  # Dopamine's zero_epsilon whenever noisy nets are on (jax/agents/full_rainbow/full_rainbow_agent.py)
        if self.exploration_schedule is not None:
            return float(self.exploration_schedule(self._current_progress_remaining))
        return dopamine_epsilon(
            self.num_timesteps, self.learning_starts, self.exploration_steps, self.exploration_initial_eps, self.exploration_final_eps
        )

    def reset_noise(self) -> None:
        """Resample the noise of the online and target networks (no-op without noisy nets)."""
        self.policy.reset_noise()

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.noisy:
            # Dopamine's select_action (full_rainbow_agent.py) draws new noise for every acting step, and with
            # zero_epsilon the agent acts with its noisy network from the first step (no uniform warm-up).
            self.policy.q_net.reset_noise()
            learning_starts = 0
        return super()._sample_action(learning_starts, action_noise, n_envs)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        epsilon: float | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        ε-greedy action, as DQN: random with probability ε, else the greedy action. ε is ``epsilon`` when given,
        else ``exploration_rate`` (the training ε) unless ``deterministic``, and :attr:`eval_epsilon` (None: 0)
        when ``deterministic``: SB3's ``evaluate_policy`` and ``EvalCallback`` act with ``deterministic=True``, so
        ``model.eval_epsilon = 0.001`` makes them evaluate as Dopamine does (``epsilon_eval``; Dopamine's eval mode
        also turns the noise of noisy nets off, as ``deterministic`` does here).
        With noisy nets the greedy action uses the current noise unless ``deterministic`` (then μ only).
        ``deterministic`` actions draw from the evaluation generator, the others from numpy's global stream.

        :param observation: the input observation
        :param state: The last hidden states (unused)
        :param episode_start: The last masks (unused)
        :param deterministic: Greedy actions of the noise-free network (ε-greedy with :attr:`eval_epsilon` if set)
        :param epsilon: ε for this call, in [0, 1], overriding the above (the noise still follows ``deterministic``)
        :return: the model's action and the next hidden state (unused)
        """
        if epsilon is None:
            epsilon = (self.eval_epsilon or 0.0) if deterministic else self.exploration_rate
        else:
            check_epsilon("epsilon", epsilon)
        if deterministic:
            # No draw at ε = 0: greedy evaluation leaves the evaluation stream where it was.
            if epsilon > 0 and self._evaluation_rng().random() < epsilon:
                return self._random_actions(observation, self._evaluation_rng()), state
        # Training draws one number per call, even at ε = 0, as SB3's DQN: the same random stream.
        elif np.random.rand() < epsilon:
            return self._random_actions(observation, None), state
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _random_actions(self, observation: np.ndarray | dict[str, np.ndarray], rng: np.random.Generator | None) -> np.ndarray:
        """
        Uniformly random actions, one per observation of a batch: from ``rng`` (the action space's ``Discrete``
        range), or from the action space's own generator when None.
        """
        n_batch = None
        if self.policy.is_vectorized_observation(observation):
            first = observation[next(iter(observation))] if isinstance(observation, dict) else observation
            n_batch = first.shape[0]
        if rng is None:
            if n_batch is None:
                return np.array(self.action_space.sample())
            return np.array([self.action_space.sample() for _ in range(n_batch)])
        space = self.action_space
        return np.asarray(space.start + rng.integers(space.n, size=n_batch), dtype=space.dtype)  # type: ignore[attr-defined]
