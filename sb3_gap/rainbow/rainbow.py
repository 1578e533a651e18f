"""Rainbow (Hessel et al. 2018) as an SB3 off-policy algorithm, every component a constructor switch.

:class:`Rainbow` builds the model (its arguments, network and replay); how it acts, learns and is saved are its bases
:class:`~sb3_gap.rainbow.acting.RainbowActing`, :class:`~sb3_gap.rainbow.training.RainbowTraining` and
:class:`~sb3_gap.rainbow.saving.RainbowSaving`.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, polyak_update

from sb3_gap.checks import Refused, check, check_choice, check_device
from sb3_gap.compile import check_compile_mode, compiler_problem, uses_cuda_graphs
from sb3_gap.rainbow.acting import RainbowActing, check_epsilon
from sb3_gap.rainbow.buffers import PER_SAMPLING, RainbowReplayBuffer
from sb3_gap.rainbow.config import LOSSES, PRESETS, HeadConfig, check_rainbow_args, rainbow_optimizer, rainbow_preset
from sb3_gap.rainbow.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, RainbowPolicy, _greedy_actions
from sb3_gap.rainbow.saving import ARCHITECTURE_ARGS, REPLAY_ARGS, RainbowSaving
from sb3_gap.rainbow.training import RainbowTraining
from sb3_gap.replay_ratio import check_updates_per_env_step

SelfRainbow = TypeVar("SelfRainbow", bound="Rainbow")


def check_backend(compile: Any, compile_mode: Any, device: th.device | str, per_sampling: Any) -> None:
    """
    Check how a Rainbow runs before anything is built: ``compile`` a bool, ``compile_mode`` a ``torch.compile`` mode,
    ``device`` one that exists here (SB3 would run a missing GPU's share on the CPU without a word), and
    ``per_sampling`` one of :data:`~sb3_gap.rainbow.buffers.PER_SAMPLING`.

    :raises ValueError: One line naming the bad value and the valid choices
    """
    check(isinstance(compile, (bool, np.bool_)), f"compile must be True or False, got {compile!r}")
    if device != "auto":
        check_device(device)
    check_choice("per_sampling", per_sampling, PER_SAMPLING)
    check_compile_mode(compile_mode)


class Rainbow(RainbowActing, RainbowTraining, RainbowSaving):
    """
    Rainbow: Combining Improvements in Deep Reinforcement Learning (Hessel et al. 2018).
    Paper: https://arxiv.org/abs/1710.02298

    Each component is a switch: distributional C51 (``distributional``, ``n_atoms``, ``v_min``,
    ``v_max``), n-step returns (``n_steps``), prioritized replay (``prioritized_replay``,
    ``priority_alpha``, ``priority_beta``), double Q (``double_q``), dueling heads (``dueling``) and
    noisy nets (``noisy``). Defaults reproduce Dopamine's Rainbow (C51 + 3-step + PER, the agent of
    Sokar & Castro 2025); :data:`PRESETS` holds ``"der"`` and ``"full"``. With every component off
    (``distributional=False, n_steps=1, prioritized_replay=False``) the update is DQN's.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: Size of the replay buffer
    :param learning_starts: How many steps of the model to collect transitions for before learning starts
    :param batch_size: Minibatch size for each gradient update
    :param tau: The soft update coefficient ("Polyak update", between 0 and 1), default 1 for hard update
    :param gamma: The discount factor
    :param train_freq: Update the model every ``train_freq`` steps, or a tuple like ``(5, "step")``
    :param gradient_steps: How many gradient steps to do after each rollout (-1: as many as env steps)
    :param n_steps: Length n of the n-step return (Sutton 1988; Hessel et al. 2018 Eq. 2)
    :param distributional: C51 head with the cross-entropy to the projected target; if False, a scalar Q-value with
        ``loss``. This and the other head switches (``n_atoms``, ``v_min``, ``v_max``, ``dueling``, ``noisy``,
        ``sigma0``) are checked and documented by :class:`~sb3_gap.rainbow.config.HeadConfig`
    :param n_atoms: Atoms N of the categorical distribution (>= 2)
    :param v_min: Smallest atom
    :param v_max: Largest atom
    :param loss: Loss of the scalar head when ``distributional=False``: ``"huber"`` (DQN's) or ``"mse"``
    :param prioritized_replay: Sample transitions with probability ∝ priority^α (Schaul et al. 2016)
    :param priority_alpha: Priority exponent α
    :param priority_beta: Importance-sampling exponent β: a float, or a schedule of the progress
        remaining (1 → 0), e.g. ``stable_baselines3.common.utils.LinearSchedule(0.4, 1.0, 1.0)``
    :param priority_eps: Added to every per-sample loss before the exponent so that no transition becomes
        unsampleable (Dopamine: 1e-10, ``priorities=jnp.sqrt(loss + 1e-10)`` in ``jax/agents/rainbow/rainbow_agent.py``)
    :param per_sampling: How a prioritized batch is drawn: ``"stratified"`` (Schaul et al. 2016, App. B.2.1; the
        default) or ``"iid"`` (independent draws with replacement, Dopamine 4.1.2's JAX sampler,
        ``jax/replay_memory/samplers.py``); :data:`~sb3_gap.rainbow.buffers.PER_SAMPLING`
    :param double_q: The online network picks the next action, the target network evaluates it (van Hasselt et al. 2016)
    :param dueling: Dueling value and advantage streams
    :param noisy: Noisy nets in the head and ψ. As in Dopamine's full Rainbow (``zero_epsilon`` in
        ``full_rainbow_agent.py``), ε is then 0 throughout, warm-up included, and the noise is resampled for every
        acting step and every update
    :param sigma0: σ₀ of the noisy layers (Dopamine's 0.1 is set by the ``der``/``full`` presets)
    :param head_init: Initialisation of the head: None (the default) follows the features extractor's ``init``
        (``sb3_gap.policy_kwargs(init="dopamine")``), else ``"torch"`` or ``"dopamine"``
        (:class:`~sb3_gap.rainbow.config.HeadConfig`, :mod:`sb3_gap.initializers`)
    :param target_update_interval: Update the target network every ``target_update_interval`` environment steps
    :param exploration_steps: ε decays linearly from ``exploration_initial_eps`` to
        ``exploration_final_eps`` over this many steps after ``learning_starts`` (Dopamine's schedule)
    :param exploration_fraction: If set, use SB3's schedule instead: ε decays over this fraction of
        ``total_timesteps`` (``exploration_steps`` is then ignored)
    :param exploration_initial_eps: Initial value of random action probability
    :param exploration_final_eps: Final value of random action probability
    :param eval_epsilon: ε of greedy (``deterministic=True``) actions, which is how SB3's ``evaluate_policy`` and
        ``EvalCallback`` and ``rl_zoo3.enjoy --deterministic`` act: None (the default) acts greedily; Dopamine evaluates
        with 0.001 (``epsilon_eval`` in ``jax/agents/rainbow/rainbow_agent.py``). Saved with the model and settable
        afterwards (``model.eval_epsilon = 0.001``, checked as here); ``predict(..., epsilon=...)`` overrides it for one
        call. Evaluation draws from its own generator, seeded from ``seed``: training is the same with or without it
    :param max_grad_norm: The maximum value for gradient clipping (None: no clipping, as Dopamine)
    :param replay_buffer_class: A subclass of :class:`~sb3_gap.rainbow.buffers.RainbowReplayBuffer`
        (None: that class); Rainbow always passes it ``n_steps``, ``gamma`` and the priority settings
    :param replay_buffer_kwargs: Other keyword arguments for the replay buffer
    :param optimize_memory_usage: Not supported (the replay stores each frame once anyway)
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments to be passed to the policy on creation, e.g.
        :func:`sb3_gap.policy_kwargs`
    :param verbose: The verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run ("auto": CUDA if available)
    :param compile: Compile the update (the loss forward and its backward) and the acting forward with
        ``torch.compile`` (Inductor: needs a C++ compiler on CPU, Triton on CUDA). The first update and the
        first acting step pay the compile time, kept in :attr:`compile_times` and logged as ``train/compile_s``.
        Saved with the model (``load`` compiles again, or warns and runs eagerly where it cannot); the saved
        weights are the plain modules'. Off by default (see docs/benchmarks_speed.md for the measured speed-up)
    :param compile_mode: ``torch.compile`` mode when ``compile``: None (torch's default), ``"default"``,
        ``"max-autotune-no-cudagraphs"``, or on CUDA ``"reduce-overhead"`` / ``"max-autotune"`` (CUDA graphs)
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    #: Rainbow builds its replay with its own ``gamma`` (:data:`sb3_gap.replay.PASSES_GAMMA_TO_REPLAY`).
    passes_gamma_to_replay: ClassVar[bool] = True
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: RainbowPolicy
    replay_buffer: ReplayBuffer  # RainbowReplayBuffer, or DictReplayBuffer for dict observations

    def __init__(
        self,
        policy: str | type[RainbowPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 6.25e-5,
        buffer_size: int = 1_000_000,
        learning_starts: int = 20_000,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        n_steps: int = 3,
        distributional: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        loss: str = "huber",
        prioritized_replay: bool = True,
        priority_alpha: float = 0.5,
        priority_beta: float | Schedule = 0.5,
        priority_eps: float = 1e-6,
        per_sampling: str = "stratified",
        double_q: bool = False,
        dueling: bool = False,
        noisy: bool = False,
        sigma0: float = 0.5,
        head_init: str | None = None,
        target_update_interval: int = 8_000,
        exploration_steps: int = 250_000,
        exploration_fraction: float | None = None,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.01,
        eval_epsilon: float | None = None,
        max_grad_norm: float | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        compile: bool = False,
        compile_mode: str | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        check_backend(compile, compile_mode, device, per_sampling)
        head = HeadConfig(distributional=distributional, n_atoms=n_atoms, v_min=v_min, v_max=v_max, dueling=dueling,
                          noisy=noisy, sigma0=sigma0, head_init=head_init)  # fmt: skip
        check_rainbow_args(
            learning_rate=learning_rate, tau=tau, gamma=gamma, learning_starts=learning_starts, train_freq=train_freq,
            gradient_steps=gradient_steps, max_grad_norm=max_grad_norm, sigma0=sigma0, priority_eps=priority_eps,
            eval_epsilon=eval_epsilon, stats_window_size=stats_window_size, n_steps=n_steps, loss=loss,
            priority_alpha=priority_alpha, priority_beta=priority_beta, exploration_steps=exploration_steps,
            exploration_fraction=exploration_fraction, exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps, target_update_interval=target_update_interval,
            replay_buffer_class=replay_buffer_class, optimize_memory_usage=optimize_memory_usage, buffer_size=buffer_size,
            batch_size=batch_size,
        )  # fmt: skip
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq, gradient_steps,
            action_noise=None, replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage, n_steps=n_steps, policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose, device=device, seed=seed,
            sde_support=False, supported_action_spaces=(spaces.Discrete,), support_multi_env=True,
        )  # fmt: skip
        if env is not None:  # updates per env step within the one bound every replay ratio has (n_envs known now)
            check_updates_per_env_step(gradient_steps, train_freq, self.n_envs)
        self._set_update(head, loss=loss, double_q=double_q, target_update_interval=target_update_interval, max_grad_norm=max_grad_norm)
        self._set_replay(prioritized_replay, priority_alpha, priority_beta, priority_eps, per_sampling)
        self._set_exploration(exploration_steps, exploration_fraction, exploration_initial_eps, exploration_final_eps, eval_epsilon)
        self._set_compile(compile, compile_mode)
        self._set_network_kwargs(head)
        if _init_setup_model:
            self._setup_model()

    def _set_update(self, head: HeadConfig, loss: str, double_q: bool, target_update_interval: int, max_grad_norm: float | None) -> None:
        """Keep the head's switches and the update's settings as attributes (``model.n_atoms``...), as saved models have them."""
        self.distributional, self.n_atoms, self.v_min, self.v_max = head.distributional, head.n_atoms, head.v_min, head.v_max
        self.dueling, self.noisy, self.sigma0, self.head_init = head.dueling, head.noisy, head.sigma0, head.head_init
        self.loss = loss
        self.double_q = double_q
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm

    def _set_replay(self, prioritized_replay: bool, priority_alpha: float, priority_beta: float | Schedule, priority_eps: float,
                    per_sampling: str) -> None:  # fmt: skip
        """Keep the settings of prioritized replay, which :meth:`_make_replay_buffer` passes on."""
        self.prioritized_replay = prioritized_replay
        self.priority_alpha = priority_alpha
        self.priority_beta = priority_beta
        self.priority_eps = priority_eps
        self.per_sampling = per_sampling
        self.frame_stack = 1  # the stack of the env, found by _setup_model

    def _set_exploration(self, exploration_steps: int, exploration_fraction: float | None, exploration_initial_eps: float,
                         exploration_final_eps: float, eval_epsilon: float | None) -> None:  # fmt: skip
        """Keep the ε schedule of training and the evaluation ε, and start at the schedule's first ε (0 with noisy nets)."""
        self.exploration_steps = exploration_steps
        self.exploration_fraction = exploration_fraction
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.eval_epsilon = eval_epsilon
        self._n_calls = 0
        # "epsilon" of the epsilon-greedy exploration
        self.exploration_rate = 0.0 if self.noisy else exploration_initial_eps

    def _set_compile(self, compile: bool, compile_mode: str | None) -> None:
        """Keep the compile settings, refusing ``compile=True`` where this device cannot compile (:mod:`sb3_gap.compile`)."""
        self.compile = bool(compile)
        self.compile_mode = compile_mode
        self.compile_times = {}
        self._compiled_update = None
        if self.compile:
            check_compile_mode(compile_mode, self.device)
            problem = compiler_problem(self.device)
            check(problem is None, f"compile=True: {problem}; valid choices here: compile=False")

    def _set_network_kwargs(self, head: HeadConfig) -> None:
        """
        Put the head's switches in a copy of ``policy_kwargs`` (so that the policy alone can be rebuilt, and the
        caller's dict is never changed), refusing one that sets them otherwise, and Dopamine's Adam ε unless set.
        """
        self.policy_kwargs = dict(self.policy_kwargs)
        network_kwargs = head.kwargs()
        for key, value in network_kwargs.items():
            if key in self.policy_kwargs and self.policy_kwargs[key] != value:
                raise Refused(
                    f"policy_kwargs[{key!r}]={self.policy_kwargs[key]!r} conflicts with Rainbow({key}={value!r}); set {key} on Rainbow only"
                )
        self.policy_kwargs.update(network_kwargs)
        rainbow_optimizer(self.policy_kwargs, self.device)

    def _make_replay_buffer(self) -> ReplayBuffer:
        """The replay of this model: a :class:`RainbowReplayBuffer` (or ``replay_buffer_class``) with Rainbow's n-step,
        γ, frame-stack and priority settings, or SB3's ``DictReplayBuffer`` for dict observations."""
        extra = dict(self.replay_buffer_kwargs)
        if isinstance(self.observation_space, spaces.Dict):
            # RainbowReplayBuffer holds array observations only; SB3's DictReplayBuffer covers the plain case.
            check(
                self.n_steps == 1 and not self.prioritized_replay,
                "Dict observations need n_steps=1 and prioritized_replay=False (SB3's DictReplayBuffer), got "
                f"n_steps={self.n_steps}, prioritized_replay={self.prioritized_replay}",
            )
            return DictReplayBuffer(self.buffer_size, self.observation_space, self.action_space, device=self.device, n_envs=self.n_envs, **extra)
        owned: dict[str, Any] = dict(
            n_steps=self.n_steps,
            gamma=self.gamma,
            frame_stack=self.frame_stack,
            prioritized=self.prioritized_replay,
            alpha=self.priority_alpha,
            priority_eps=self.priority_eps,
            per_sampling=self.per_sampling,
        )
        clash = sorted(set(owned) & set(extra))
        check(not clash, f"replay_buffer_kwargs {clash} are set by Rainbow's own arguments; pass them to Rainbow instead")
        buffer_class = self.replay_buffer_class or RainbowReplayBuffer
        return buffer_class(self.buffer_size, self.observation_space, self.action_space, device=self.device, n_envs=self.n_envs, **owned, **extra)

    def _setup_model(self) -> None:
        # Not OffPolicyAlgorithm._setup_model: that one swaps in NStepReplayBuffer or silently drops n_steps
        # when a replay_buffer_class is set; Rainbow builds its own buffer from its own arguments.
        self._fill_added_later()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.frame_stack = self._detect_frame_stack()
        if self.replay_buffer is None:
            self.replay_buffer = self._make_replay_buffer()
            self.replay_buffer_class = type(self.replay_buffer)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        self._convert_train_freq()
        self._create_aliases()
        # SB3's ε schedule when exploration_fraction is set (built once, as DQN does); else Dopamine's
        self.exploration_schedule = (
            None
            if self.exploration_fraction is None
            else LinearSchedule(self.exploration_initial_eps, self.exploration_final_eps, self.exploration_fraction)
        )
        # Copy running stats, see https://github.com/DLR-RM/stable-baselines3/issues/996
        self.batch_norm_stats = get_parameters_by_name(self.q_net, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.q_net_target, ["running_"])
        if self.n_envs > self.target_update_interval:
            warnings.warn(
                f"The number of environments ({self.n_envs}) is greater than target_update_interval "
                f"({self.target_update_interval}): the target network is updated at every env.step().",
                stacklevel=2,
            )
        self._setup_compile()

    def _create_aliases(self) -> None:
        """``q_net`` and ``q_net_target``: the policy's networks."""
        self.q_net = self.policy.q_net
        self.q_net_target = self.policy.q_net_target

    def _setup_compile(self) -> None:
        """Compile the update loss and the acting forward when ``compile``; a loaded model that cannot warns and runs eagerly."""
        self._compiled_update = None
        self.compile_times = {}
        self.policy.set_compiled_acting(None)
        if not getattr(self, "compile", False):  # models saved before compile existed
            self.compile, self.compile_mode = False, None
            return
        try:
            check_compile_mode(self.compile_mode, self.device)
            problem = compiler_problem(self.device)
        except ValueError as e:
            problem = str(e)
        if problem is not None:
            warnings.warn(f"Rainbow(compile=True) runs eagerly: {problem}", stacklevel=2)
            return
        # Compiled as functions of the modules (not by swapping in torch.compile's OptimizedModule wrappers):
        # the policy's modules and state_dict keys stay those of the eager model, so save/load are unchanged.
        self._compiled_update = th.compile(self._update_loss, mode=self.compile_mode)
        self.policy.set_compiled_acting(
            th.compile(_greedy_actions, mode=self.compile_mode), uses_cuda_graphs(self.compile_mode, self.device), self.compile_times
        )

    def _on_step(self) -> None:
        """Update the exploration rate and the target network; called after each ``env.step()``."""
        self._n_calls += 1
        # Each call to step() corresponds to n_envs transitions.
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = self._exploration_eps()
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def learn(
        self: SelfRainbow,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "Rainbow",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRainbow:
        """SB3's ``learn``, refusing a model whose ``buffer_size`` is below its ``batch_size`` (as the constructor does)."""
        check(
            self.buffer_size >= self.batch_size,
            f"buffer_size={self.buffer_size} is smaller than batch_size={self.batch_size}: every batch would repeat the "
            "few stored transitions; load or build the model with buffer_size >= batch_size to train it",
        )
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


__all__ = ["ARCHITECTURE_ARGS", "LOSSES", "PRESETS", "REPLAY_ARGS", "HeadConfig", "Rainbow", "check_epsilon", "rainbow_preset"]
