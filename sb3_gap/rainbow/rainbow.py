"""Rainbow (Hessel et al. 2018) as an SB3 off-policy algorithm, every component a constructor switch."""

from __future__ import annotations

import io
import pathlib
import time
import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, polyak_update

from sb3_gap.algo_args import ALGO_ARG_BOUNDS, check_model_attributes
from sb3_gap.checks import Refused, check, check_choice, check_device
from sb3_gap.compile import check_compile_mode, compiler_problem, uses_cuda_graphs
from sb3_gap.rainbow.buffers import PER_SAMPLING, REPLAY_SETTINGS, RainbowReplayBuffer, infer_frame_stack, rainbow_replay_mismatches
from sb3_gap.rainbow.config import LOSSES, PRESETS, HeadConfig, check_rainbow_args, rainbow_optimizer, rainbow_preset
from sb3_gap.rainbow.loss import per_sample_loss
from sb3_gap.rainbow.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, RainbowNetwork, RainbowPolicy, _greedy_actions
from sb3_gap.replay import replay_mismatch_error, replay_mismatches
from sb3_gap.replay_ratio import check_updates_per_env_step

SelfRainbow = TypeVar("SelfRainbow", bound="Rainbow")

#: Constructor arguments that shape the network: fixed by the saved weights, refused as overrides by :meth:`Rainbow.load`.
ARCHITECTURE_ARGS = HeadConfig.names()
#: Constructor arguments that decide what the replay stores and how it samples (checked by :meth:`Rainbow.load_replay_buffer`).
REPLAY_ARGS = tuple(REPLAY_SETTINGS)
# Attributes added after models were first saved, with the behaviour those models had.
_ADDED_LATER: dict[str, Any] = {"per_sampling": "stratified", "eval_epsilon": None, "head_init": None}


def check_epsilon(name: str, epsilon: Any) -> None:
    """None or a probability (:data:`sb3_gap.algo_args.ALGO_ARG_BOUNDS`' ``eval_epsilon``); one line naming the bad value."""
    ALGO_ARG_BOUNDS["eval_epsilon"].check(name, epsilon)


class Rainbow(OffPolicyAlgorithm):
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
        afterwards (``model.eval_epsilon = 0.001``); ``predict(..., epsilon=...)`` overrides it for one call
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

    ARCHITECTURE_ARGS: ClassVar[tuple[str, ...]] = ARCHITECTURE_ARGS
    #: Rainbow builds its replay with its own ``gamma`` (:data:`sb3_gap.replay.PASSES_GAMMA_TO_REPLAY`).
    passes_gamma_to_replay: ClassVar[bool] = True
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    q_net: RainbowNetwork
    q_net_target: RainbowNetwork
    policy: RainbowPolicy
    replay_buffer: ReplayBuffer  # RainbowReplayBuffer, or DictReplayBuffer for dict observations
    #: Gradient steps skipped because the replay had no complete n-step transition yet (``train/skipped_updates``;
    #: ``train/n_updates`` counts the real ones). A class default: models saved before it existed, and the Hub's
    #: pickle-free files, which keep the constructor's attributes only, start from 0.
    _n_skipped_updates: int = 0

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
        check(isinstance(compile, (bool, np.bool_)), f"compile must be True or False, got {compile!r}")
        if device != "auto":
            check_device(device)  # SB3 would run a missing GPU's share on the CPU without a word
        check_choice("per_sampling", per_sampling, PER_SAMPLING)
        check_compile_mode(compile_mode)
        head = HeadConfig(distributional=distributional, n_atoms=n_atoms, v_min=v_min, v_max=v_max, dueling=dueling,
                          noisy=noisy, sigma0=sigma0, head_init=head_init)  # fmt: skip
        check_rainbow_args(
            learning_rate=learning_rate,
            tau=tau,
            gamma=gamma,
            learning_starts=learning_starts,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            max_grad_norm=max_grad_norm,
            sigma0=sigma0,
            priority_eps=priority_eps,
            eval_epsilon=eval_epsilon,
            stats_window_size=stats_window_size,
            n_steps=n_steps,
            loss=loss,
            priority_alpha=priority_alpha,
            priority_beta=priority_beta,
            exploration_steps=exploration_steps,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            target_update_interval=target_update_interval,
            replay_buffer_class=replay_buffer_class,
            optimize_memory_usage=optimize_memory_usage,
            buffer_size=buffer_size,
            batch_size=batch_size,
        )
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq, gradient_steps,
            action_noise=None, replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage, n_steps=n_steps, policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose, device=device, seed=seed,
            sde_support=False, supported_action_spaces=(spaces.Discrete,), support_multi_env=True,
        )  # fmt: skip
        if env is not None:  # updates per env step within the one bound every replay ratio has (n_envs known now)
            check_updates_per_env_step(gradient_steps, train_freq, self.n_envs)
        # The head switches stay attributes (model.n_atoms, ...), as saved models have them.
        self.distributional, self.n_atoms, self.v_min, self.v_max = head.distributional, head.n_atoms, head.v_min, head.v_max
        self.dueling, self.noisy, self.sigma0, self.head_init = head.dueling, head.noisy, head.sigma0, head.head_init
        self.loss = loss
        self.prioritized_replay = prioritized_replay
        self.priority_alpha = priority_alpha
        self.priority_beta = priority_beta
        self.priority_eps = priority_eps
        self.per_sampling = per_sampling
        self.eval_epsilon = eval_epsilon
        self.double_q = double_q
        self.target_update_interval = target_update_interval
        self.exploration_steps = exploration_steps
        self.exploration_fraction = exploration_fraction
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.max_grad_norm = max_grad_norm
        self.compile = bool(compile)
        self.compile_mode = compile_mode
        #: Seconds spent compiling, per compiled function (``"update"``, ``"act"``), once each has run
        self.compile_times: dict[str, float] = {}
        self._compiled_update: Any = None
        if self.compile:
            check_compile_mode(compile_mode, self.device)
            problem = compiler_problem(self.device)
            check(problem is None, f"compile=True: {problem}; valid choices here: compile=False")
        self._n_calls = 0
        # "epsilon" of the epsilon-greedy exploration
        self.exploration_rate = 0.0 if noisy else exploration_initial_eps
        self.frame_stack = 1

        # The network switches live in the policy kwargs (so that the policy alone can be rebuilt);
        # a copy, so that the caller's dict is never changed.
        self.policy_kwargs = dict(self.policy_kwargs)
        network_kwargs = head.kwargs()
        for key, value in network_kwargs.items():
            if key in self.policy_kwargs and self.policy_kwargs[key] != value:
                raise Refused(
                    f"policy_kwargs[{key!r}]={self.policy_kwargs[key]!r} conflicts with Rainbow({key}={value!r}); set {key} on Rainbow only"
                )
        self.policy_kwargs.update(network_kwargs)
        rainbow_optimizer(self.policy_kwargs, self.device)

        if _init_setup_model:
            self._setup_model()

    def _detect_frame_stack(self) -> int:
        """``n_stack`` of an SB3 ``VecFrameStack`` whose frames the replay can store once, else 1."""
        return self.frame_stack if self.env is None else infer_frame_stack(self.env)

    def _make_replay_buffer(self) -> ReplayBuffer:
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
        for name, before in _ADDED_LATER.items():  # a model saved before the argument existed behaved as its default
            if not hasattr(self, name):
                setattr(self, name, before)
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

    def _exploration_eps(self) -> float:
        if self.noisy:
            return 0.0  # Dopamine's zero_epsilon whenever noisy nets are on (jax/agents/full_rainbow/full_rainbow_agent.py)
        if self.exploration_schedule is not None:
            return float(self.exploration_schedule(self._current_progress_remaining))
        # Dopamine's linearly_decaying_epsilon: constant during warm-up, then linear over exploration_steps.
        done = max(0, self.num_timesteps - self.learning_starts)
        frac = 1.0 if self.exploration_steps == 0 else min(1.0, done / self.exploration_steps)
        return self.exploration_initial_eps + frac * (self.exploration_final_eps - self.exploration_initial_eps)

    def _current_beta(self) -> float:
        beta = self.priority_beta
        return float(beta(self._current_progress_remaining)) if callable(beta) else float(beta)

    def _on_step(self) -> None:
        """Update the exploration rate and the target network; called after each ``env.step()``."""
        self._n_calls += 1
        # Each call to step() corresponds to n_envs transitions.
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = self._exploration_eps()
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def per_sample_loss(self, replay_data: Any) -> tuple[th.Tensor, th.Tensor]:
        """The per-transition loss of a replay batch and Q of the taken actions (:func:`sb3_gap.rainbow.loss.per_sample_loss`)."""
        return per_sample_loss(self.q_net, self.q_net_target, replay_data, self.gamma, self.double_q, self.distributional, self.loss)

    def _update_loss(self, replay_data: Any, weights: th.Tensor | None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The update's loss (mean of the IS-weighted per-sample losses), the per-sample losses and Q of the taken actions."""
        per_sample, q_taken = self.per_sample_loss(replay_data)
        # Importance-sampling correction of prioritized replay (Schaul et al. 2016, Alg. 1).
        loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
        return loss, per_sample, q_taken

    def _replay_can_sample(self) -> bool:
        """Whether the replay holds a transition to sample (a complete n-step window for :class:`RainbowReplayBuffer`)."""
        can_sample = getattr(self.replay_buffer, "can_sample", None)
        return bool(can_sample()) if callable(can_sample) else self.replay_buffer.size() > 0

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Switch to train mode (this affects batch norm / dropout, never the noise of noisy layers)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        beta = self._current_beta()
        rainbow_buffer = isinstance(self.replay_buffer, RainbowReplayBuffer)
        if not self._replay_can_sample():
            # No complete n-step window yet (learning_starts or train_freq below n_steps, e.g. DER's train_freq=1 with a
            # small learning_starts, or a model resumed without its replay): skip these updates rather than raise inside
            # learn(). SB3 trains as soon as num_timesteps > learning_starts (off_policy_algorithm.py, learn()); Dopamine
            # never reaches this, its min_replay_history exceeding its update_horizon. Nothing is drawn or changed.
            self._n_skipped_updates += gradient_steps
            self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
            self.logger.record("train/skipped_updates", self._n_skipped_updates, exclude="tensorboard")
            return

        # Statistics stay on the device until the end: no host sync per gradient step
        # (except the priorities, which the replay needs on the host).
        losses, mean_qs, mean_weights = [], [], []
        update = self._update_loss if self._compiled_update is None else self._compiled_update
        cuda_graphs = self._compiled_update is not None and uses_cuda_graphs(self.compile_mode, self.device)
        for _ in range(gradient_steps):
            timing = self._compiled_update is not None and "update" not in self.compile_times
            if timing:
                started = time.perf_counter()
            if rainbow_buffer:
                replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, beta=beta)  # type: ignore[call-arg]
                weights = replay_data.weights.reshape(-1)  # type: ignore[attr-defined]  # RainbowSamples
            else:
                replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
                weights = None
            if self.noisy:
                # New noise for every update, independent for online and target (Fortunato et al. 2018, Alg. 1).
                self.policy.reset_noise()
            if cuda_graphs:
                th.compiler.cudagraph_mark_step_begin()  # the previous update's graph outputs may be overwritten
            loss, per_sample, q_taken = update(replay_data, weights)

            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

            if rainbow_buffer and self.prioritized_replay:
                # The one host sync per update: the sum tree lives on the host and the next sample needs it.
                self.replay_buffer.update_priorities(replay_data.indices, per_sample.detach().cpu().numpy())  # type: ignore[attr-defined]
            # Kept until the end of train(): copies when CUDA graphs would overwrite the outputs at the next replay.
            losses.append(loss.detach().clone() if cuda_graphs else loss.detach())
            mean_qs.append(q_taken.mean())
            if weights is not None:
                mean_weights.append(weights.mean())
            if timing:
                self._record_compile_time("update", time.perf_counter() - started)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self._n_skipped_updates:
            self.logger.record("train/skipped_updates", self._n_skipped_updates, exclude="tensorboard")
        if losses:
            # One device-to-host copy for the three statistics (instead of one sync per .item()).
            stats = [th.stack(losses).mean(), th.stack(mean_qs).mean()] + ([th.stack(mean_weights).mean()] if mean_weights else [])
            values = th.stack(stats).tolist()
            self.logger.record("train/loss", values[0])
            self.logger.record("train/mean_q", values[1])
            self.logger.record("train/is_weight_mean", values[2] if mean_weights else 1.0)
        if self.prioritized_replay:
            self.logger.record("train/priority_beta", beta)
        if self.compile_times:
            self.logger.record("train/compile_s", sum(self.compile_times.values()))

    def _record_compile_time(self, name: str, seconds: float) -> None:
        self.compile_times[name] = seconds
        if self.verbose >= 1:
            print(f"Rainbow: torch.compile of the {name} took {seconds:.1f} s (mode {self.compile_mode!r})")

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

        :param observation: the input observation
        :param state: The last hidden states (unused)
        :param episode_start: The last masks (unused)
        :param deterministic: Greedy actions of the noise-free network (ε-greedy with :attr:`eval_epsilon` if set)
        :param epsilon: ε for this call, in [0, 1], overriding the above (the noise still follows ``deterministic``)
        :return: the model's action and the next hidden state (unused)
        """
        if epsilon is None:
            eval_epsilon = getattr(self, "eval_epsilon", None)
            epsilon = (eval_epsilon or 0.0) if deterministic else self.exploration_rate
        else:
            check_epsilon("epsilon", epsilon)
        # Training (not deterministic) draws one number per call as before, even at ε = 0: the same random stream.
        if (not deterministic or epsilon > 0) and np.random.rand() < epsilon:
            if self.policy.is_vectorized_observation(observation):
                if isinstance(observation, dict):
                    n_batch = observation[next(iter(observation.keys()))].shape[0]
                else:
                    n_batch = observation.shape[0]
                action = np.array([self.action_space.sample() for _ in range(n_batch)])
            else:
                action = np.array(self.action_space.sample())
        else:
            action, state = self.policy.predict(observation, state, episode_start, deterministic)
        return action, state

    def learn(
        self: SelfRainbow,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "Rainbow",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRainbow:
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

    @classmethod
    def load(
        cls: type[SelfRainbow],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfRainbow:
        """
        SB3's ``load``, refusing overrides of the arguments that shape the network (:data:`ARCHITECTURE_ARGS`):
        the saved weights fix them, and ``load(path, n_atoms=21)`` on a 51-atom model would otherwise set
        ``model.n_atoms = 21`` while the network keeps 51 atoms. Other overrides (``buffer_size``,
        ``learning_rate``, ``exploration_rate``...) work as in SB3, within the bounds the constructor checks
        (:data:`sb3_gap.algo_args.ALGO_ARG_BOUNDS`: ``eval_epsilon=7.0`` or ``priority_eps=0.0`` are refused; an
        ``exploration_rate`` must be a probability).
        """
        check_model_attributes(kwargs)
        fixed = sorted(set(kwargs) & set(cls.ARCHITECTURE_ARGS)) + sorted(set(custom_objects or {}) & set(cls.ARCHITECTURE_ARGS))
        if fixed:
            raise Refused(
                f"Rainbow.load cannot override {fixed}: they shape the network, which the saved weights fix "
                f"(architecture arguments: {list(cls.ARCHITECTURE_ARGS)}); train a new model to change them"
            )
        return super().load(path, env=env, device=device, custom_objects=custom_objects, print_system_info=print_system_info,
                            force_reset=force_reset, **kwargs)  # fmt: skip

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        SB3's ``set_parameters``, first checking that the policy's parameters fit this model's network: those of a
        Rainbow with another atom count are refused in one line naming both ``n_atoms`` (torch would raise a many-line
        size-mismatch error, after copying the tensors that do fit), as are other shapes and, with ``exact_match``,
        missing or extra tensors. Nothing is loaded when the check fails.

        :param load_path_or_dict: A zip saved by ``save`` (path or file-like), or ``get_parameters()``'s dict
        :param exact_match: Require every parameter of the model, and no other (SB3's meaning)
        :param device: Device to load the tensors of a zip onto
        :raises ValueError: Naming the parameters' and this model's atom counts, or the tensor at fault
        """
        if isinstance(load_path_or_dict, dict):
            params, source = load_path_or_dict, "the given parameters"
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, load_data=False, device=device)
            source = str(load_path_or_dict) if isinstance(load_path_or_dict, (str, pathlib.Path)) else "the given file"
        if isinstance(params.get("policy"), dict):
            self._check_policy_parameters(params["policy"], source, exact_match)
        super().set_parameters(params, exact_match=exact_match, device=device)

    def _check_policy_parameters(self, state: dict[str, Any], source: str, exact_match: bool) -> None:
        """Refuse a policy ``state_dict`` that does not fit ``self.policy`` (see :meth:`set_parameters`)."""
        own = self.policy.state_dict()

        def head(support: th.Tensor) -> str:  # the support buffer holds the atoms (one zero for a scalar head)
            return f"n_atoms={int(support.shape[0])}" if support.shape[0] > 1 else "distributional=False"

        support = "q_net.support"
        if support in own and isinstance(state.get(support), th.Tensor) and state[support].shape != own[support].shape:
            raise Refused(
                f"The parameters in {source} are a Rainbow's with {head(state[support])}, this model has {head(own[support])}: "
                "the atom counts must agree (load that model with Rainbow.load, or build this one with its n_atoms)"
            )
        for name, tensor in own.items():
            theirs = state.get(name)
            if isinstance(theirs, th.Tensor) and theirs.shape != tensor.shape:
                raise Refused(
                    f"The parameters in {source} do not fit this model: {name!r} has shape {list(theirs.shape)} there, "
                    f"{list(tensor.shape)} here (another width_scale, encoder, head or env)"
                )
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if exact_match and (missing or unexpected):
            raise Refused(
                f"The parameters in {source} do not fit this model: missing {missing[:3]}{' ...' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''} (another architecture); "
                "pass exact_match=False to load the tensors both have"
            )

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer saved with ``save_replay_buffer``, refusing one whose n-step length, discount,
        sampling (prioritized or uniform, α) or frame stack differ from this model's: training would silently use
        the buffer's settings (e.g. uniform sampling with another γ while ``priority_beta`` is still logged).
        The model's buffer is kept when the loaded one is refused.

        :param path: Path of the pickled replay buffer
        :param truncate_last_traj: See SB3's ``OffPolicyAlgorithm.load_replay_buffer``
        :raises ValueError: Naming each setting, the model's value and the buffer's
        """
        previous = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)
        problems = self._replay_mismatches(self.replay_buffer) if isinstance(previous, RainbowReplayBuffer) or previous is None else []
        if problems:
            self.replay_buffer = previous
            raise replay_mismatch_error(f"The replay buffer in {path}", problems)

    def _replay_mismatches(self, loaded: Any) -> list[str]:
        """What differs between ``loaded`` and the replay this model builds (also :func:`sb3_gap.replay.check_loaded_replay`'s)."""
        if isinstance(self.observation_space, spaces.Dict):  # SB3's DictReplayBuffer, 1-step uniform
            return replay_mismatches(loaded, {"n_steps": 1})
        settings = {key: getattr(self, key) for key in REPLAY_ARGS}
        return rainbow_replay_mismatches(loaded, settings, self._detect_frame_stack())

    def _excluded_save_params(self) -> list[str]:
        # compile and compile_mode are saved; the compiled functions and their timings are rebuilt by _setup_model
        return [*super()._excluded_save_params(), "q_net", "q_net_target", "_compiled_update", "compile_times"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []


__all__ = ["ARCHITECTURE_ARGS", "LOSSES", "PRESETS", "HeadConfig", "Rainbow", "rainbow_preset"]
