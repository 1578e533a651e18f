"""RL Zoo (rl_zoo3) integration: ``--algo rainbow``, sb3_gap names in YAML, an Optuna sampler, Atari ids.

:func:`register_with_zoo` is called by the installed startup hook (``sb3_gap_zoo_hook``) as soon as
``rl_zoo3`` is imported, and by ``python -m sb3_gap.train``. It is idempotent and:

1. adds sb3_gap's algorithms missing from ``rl_zoo3.utils.ALGOS`` (``"rainbow"``), so that
   ``--algo rainbow`` is a valid choice and ``enjoy`` can load the model;
2. registers :func:`sample_rainbow_params` in ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``
   (and a converter in ``HYPERPARAMS_CONVERTER``) so that ``-optimize`` works;
3. puts :data:`YAML_NAMES` (``policy_kwargs``, ``ConvExtractor``, ``FrameReplayBuffer``, ``Kron``, ``sb3_gap``) in the
   namespace where ``rl_zoo3.exp_manager`` ``eval``s string ``policy_kwargs``, ``replay_buffer_class`` and
   ``replay_buffer_kwargs``, so a YAML can say
   ``policy_kwargs: "policy_kwargs(encoder='impala', bottleneck='gap', width_scale=4)"`` and
   ``replay_buffer_class: FrameReplayBuffer``;
4. makes ``ExperimentManager.is_atari`` (and so the YAML ``atari`` section, stochastic evaluation and
   ``enjoy``'s score printing) recognise ``Dopamine/*`` and ``Atari100k/*`` ids;
5. imports :mod:`sb3_gap`, which registers the MinAtar, Atari and Procgen ids;
6. makes the evaluation env of ``rl_zoo3.train`` get the YAML's ``env_kwargs`` when ``--eval-env-kwargs`` is not
   given, as rl_zoo3 documents ("Use env-kwargs if eval_env_kwargs was not specified", ``ExperimentManager.__init__``).
   rl_zoo3 2.x binds ``eval_env_kwargs`` to the command line's dict before ``_preprocess_hyperparams`` replaces
   ``env_kwargs`` with the YAML's, so a YAML-only ``env_kwargs`` never reached the evaluation env: with
   ``zoo_configs``' MinAtar sections (``use_minimal_action_set: false``, 6 actions) the evaluation env had the
   minimal set (3 for Breakout) and ``--eval-freq`` crashed with ``IndexError`` in ``minatar/gym.py``;
7. turns a ``replay_ratio`` in the YAML or ``--hyperparams`` (gradient updates per env step) into SB3's ``train_freq``
   and ``gradient_steps`` for the run's ``n_envs`` (:func:`sb3_gap.replay_ratio.replay_ratio_schedule`) by the sweep's
   rules (:func:`sb3_gap.replay_ratio.apply_replay_ratio`): ``--hyperparams``' ratio replaces the section's own
   ``train_freq``/``gradient_steps``; a ratio given with either in the same place, a ratio that is not a positive p/q
   up to :data:`sb3_gap.replay_ratio.MAX_REPLAY_RATIO`, or one for an on-policy algorithm (PPO, A2C) is refused;
8. gives an n-step ``FrameReplayBuffer`` the algorithm's ``gamma`` (SB3 passes a custom buffer neither ``n_steps`` nor
   ``gamma``) and refuses a different one in ``replay_buffer_kwargs`` (:func:`sb3_gap.replay.with_algorithm_gamma`);
9. makes ``--trained-agent`` refuse the ``replay_buffer.pkl`` next to the model when it is a ``FrameReplayBuffer`` whose
   ``n_steps``/``gamma`` differ from the model's (:func:`sb3_gap.replay.check_loaded_replay`), as
   ``Rainbow.load_replay_buffer`` does: rl_zoo3's ``_load_pretrained_agent`` loads it with SB3's unchecked
   ``load_replay_buffer``, and training would silently use the buffer's settings;
10. checks the hyperparameters as written (YAML, ``--hyperparams``), before rl_zoo3 turns ``learning_rate`` and
    ``clip_range`` into schedule objects (:func:`sb3_gap.algo_args.check_algo_args`): Rainbow's against sb3_gap's whole
    range table; an SB3/sb3-contrib algorithm's only where it would silently misuse the value (NaN, a non-positive or
    ``lin_-1`` learning rate, ``clip_range: 0``, a negative ``max_grad_norm``, ``train_freq: 0``...), so that every
    config rl_zoo3 ships (SAC's ``ent_coef: auto``...) runs as it does without sb3_gap; sb3_gap's own networks
    (``ConvExtractor``, in ``policy_kwargs(...)`` or dict form) and buffers are checked for any algorithm;
11. refuses ``--device cuda`` (or ``cuda:N``, ``mps``) where torch sees no such device
    (:func:`sb3_gap.checks.check_device`) instead of SB3's silent fall-back to the CPU.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

import sb3_gap
from sb3_gap.algo_args import check_algo_args
from sb3_gap.algos import ALGOS as SB3_GAP_ALGOS
from sb3_gap.algos import get_algo
from sb3_gap.checks import Refused, check_device
from sb3_gap.envs.atari import is_sb3_gap_atari
from sb3_gap.extractor import ConvExtractor, policy_kwargs
from sb3_gap.optim import Kron
from sb3_gap.replay import FrameReplayBuffer, check_loaded_replay, with_algorithm_gamma
from sb3_gap.replay_ratio import REPLAY_RATIO, apply_replay_ratio, check_takes_replay_ratio

# Names usable inside string hyperparameters that rl_zoo3 eval()s (policy_kwargs, replay_buffer_class, replay_buffer_kwargs).
YAML_NAMES: dict[str, Any] = {
    "policy_kwargs": policy_kwargs,
    "ConvExtractor": ConvExtractor,
    "FrameReplayBuffer": FrameReplayBuffer,
    "Kron": Kron,  # optimizer_class=Kron (sb3_gap.optim.Kron: kron-torch's, with a state dict SB3 can load)
    "sb3_gap": sb3_gap,
}


class HyperparameterError(Refused):
    """A hyperparameter, ``--device`` or ``--trained-agent`` (its replay) refused by the hook before training
    (``sb3-gap train`` prints it in one line)."""


def sample_rainbow_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Optuna sampler for Rainbow (``-optimize``), around Dopamine's values (paper Table 1).

    Samples the optimiser and update settings plus the paper's two network axes, the bottleneck
    (flatten vs GAP) and ψ's width scale, with an Impala encoder.

    :param trial: The Optuna trial
    :param n_actions: Number of actions (unused; rl_zoo3's sampler signature)
    :param n_envs: Number of envs (unused)
    :param additional_args: rl_zoo3's extra arguments (unused)
    :return: Rainbow keyword arguments
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.001, 0.03, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [1, 3, 5, 10]),
        "target_update_interval": trial.suggest_int("target_update_interval", 100, 10_000, log=True),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.1),
        "bottleneck": trial.suggest_categorical("bottleneck", ["flatten", "gap"]),
        "width_scale": trial.suggest_categorical("width_scale", [1, 2, 4]),
    }
    return convert_rainbow_params(sampled)


def convert_rainbow_params(sampled: dict[str, Any]) -> dict[str, Any]:
    """Turn sampled (or best-trial) parameters into Rainbow keyword arguments (``HYPERPARAMS_CONVERTER``)."""
    params = dict(sampled)
    if "one_minus_gamma" in params:
        params["gamma"] = 1.0 - params.pop("one_minus_gamma")
    bottleneck, width_scale = params.pop("bottleneck", None), params.pop("width_scale", None)
    if bottleneck is not None or width_scale is not None:
        params["policy_kwargs"] = policy_kwargs(encoder="impala", bottleneck=bottleneck or "gap", width_scale=width_scale or 1)
    return params


def _is_atari_or_sb3_gap_atari(original: Any) -> Any:
    def is_atari(env_id: str) -> bool:
        return original(env_id) or is_sb3_gap_atari(env_id)

    is_atari._sb3_gap = True  # type: ignore[attr-defined]
    return staticmethod(is_atari)


def owned_by_sb3_gap(algo_class: Any) -> bool:
    """Whether sb3_gap wrote the algorithm (Rainbow), so that its whole range table applies (:func:`check_algo_args`);
    SB3's and sb3-contrib's algorithms are the host's: only what they would silently misuse is refused."""
    return isinstance(algo_class, type) and algo_class.__module__.split(".")[0] == "sb3_gap"


def _with_replay_ratio(manager: Any, hyperparams: dict[str, Any], algo_class: Any) -> dict[str, Any]:
    """
    ``hyperparams`` (YAML section, Optuna trial and ``--hyperparams`` merged by rl_zoo3's ``read_hyperparameters``) with
    ``replay_ratio`` turned into ``train_freq``/``gradient_steps`` by the sweep's rules (:func:`apply_replay_ratio`): the
    two layers are the section and ``--hyperparams``, each refused where it gives the ratio with what it sets, the later
    one winning key by key; refused for algorithms without ``train_freq``/``gradient_steps`` (on-policy).
    """
    custom = dict(manager.custom_hyperparams or {})
    if REPLAY_RATIO not in hyperparams:
        return hyperparams
    zoo_algos = importlib.import_module("rl_zoo3.utils").ALGOS
    check_takes_replay_ratio(manager.algo, algo_class, zoo_algos)
    section = {k: v for k, v in hyperparams.items() if k not in custom}
    given = {k: hyperparams[k] for k in custom if k in hyperparams}
    n_envs = hyperparams.get("n_envs", 1)
    return apply_replay_ratio(section, given, n_envs=n_envs, names=(f"the section of {manager.config}", "--hyperparams"))


def _eval_env_gets_yaml_env_kwargs(original: Any) -> Any:
    """Wrap ``ExperimentManager._preprocess_hyperparams``: see items 6, 7, 8 and 10 of the module docstring."""

    @functools.wraps(original)  # __wrapped__: rl_zoo3's own, as the tests run it
    def _preprocess_hyperparams(self: Any, hyperparams: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        algo_class = importlib.import_module("rl_zoo3.utils").ALGOS.get(self.algo)
        try:  # sb3_gap's refusals are one line (HyperparameterError); the host's own errors stay as they are
            # Before rl_zoo3 turns numbers and lin_<x> strings into schedule objects, and replay_ratio into what it sets.
            hyperparams = _with_replay_ratio(self, hyperparams, algo_class)  # step 7 of the module docstring
            check_algo_args(hyperparams, host=not owned_by_sb3_gap(algo_class))  # step 10
            check_device(self.device, "--device")  # step 11: SB3 would run --device cuda on the CPU without a word
            out = original(self, hyperparams, *args, **kwargs)  # eval()s policy_kwargs: sb3_gap.policy_kwargs(...) checks
            processed = out[0]
            network = processed.get("policy_kwargs")
            extractor = network.get("features_extractor_class") if isinstance(network, dict) else None
            if isinstance(extractor, type) and issubclass(extractor, ConvExtractor):  # sb3_gap's network, in any form
                ConvExtractor.validate(**(network.get("features_extractor_kwargs") or {}))
            if algo_class is not None:  # replay_buffer_class is a class by now (rl_zoo3 eval()s it above)
                processed.update(with_algorithm_gamma(algo_class, processed))  # step 8
        except Refused as e:
            raise HyperparameterError(str(e)) from None
        if self._eval_env_kwargs_args is None:  # no --eval-env-kwargs: evaluate on the training env's kwargs
            self.eval_env_kwargs = self.env_kwargs
        return out

    _preprocess_hyperparams._sb3_gap = True  # type: ignore[attr-defined]
    return _preprocess_hyperparams


def _trained_agent_replay_is_checked(original: Any) -> Any:
    """Wrap ``ExperimentManager._load_pretrained_agent``: see step 9 of the module docstring."""

    def _load_pretrained_agent(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:  # Rainbow.load / load_replay_buffer refuse what they cannot honour with a one-line ValueError
            model = original(self, *args, **kwargs)
            path = os.path.join(os.path.dirname(self.trained_agent), "replay_buffer.pkl")  # where rl_zoo3 loads it from
            buffer_class = getattr(model, "replay_buffer_class", None)
            frame_replay = isinstance(getattr(model, "replay_buffer", None), FrameReplayBuffer) or (
                isinstance(buffer_class, type) and issubclass(buffer_class, FrameReplayBuffer)
            )
            if os.path.exists(path) and frame_replay:
                check_loaded_replay(model, f"The replay buffer in {path}")
        except ValueError as e:
            raise HyperparameterError(str(e)) from None
        return model

    _load_pretrained_agent._sb3_gap = True  # type: ignore[attr-defined]
    return _load_pretrained_agent


def register_with_zoo() -> list[str]:
    """
    Register sb3_gap's algorithms, sampler, YAML names and Atari ids with rl_zoo3 (idempotent).

    :return: The algorithm names added to ``rl_zoo3.utils.ALGOS`` (those whose class imports)
    """
    zoo_utils = importlib.import_module("rl_zoo3.utils")
    hyperparams_opt = importlib.import_module("rl_zoo3.hyperparams_opt")
    exp_manager = importlib.import_module("rl_zoo3.exp_manager")

    added = []
    for name in SB3_GAP_ALGOS:
        if name in zoo_utils.ALGOS:
            continue
        try:
            zoo_utils.ALGOS[name] = get_algo(name)
        except ImportError:  # e.g. an install without that algorithm: leave the Zoo as it is
            continue
        added.append(name)
    # exp_manager and enjoy import ALGOS by name: same dict object, nothing else to update.
    hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault("rainbow", sample_rainbow_params)
    hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault("rainbow", convert_rainbow_params)
    for key, value in YAML_NAMES.items():
        vars(exp_manager).setdefault(key, value)
    manager = exp_manager.ExperimentManager
    if not getattr(manager.is_atari, "_sb3_gap", False):
        manager.is_atari = _is_atari_or_sb3_gap_atari(manager.is_atari)
    if hasattr(manager, "_preprocess_hyperparams") and not getattr(manager._preprocess_hyperparams, "_sb3_gap", False):
        manager._preprocess_hyperparams = _eval_env_gets_yaml_env_kwargs(manager._preprocess_hyperparams)
    if hasattr(manager, "_load_pretrained_agent") and not getattr(manager._load_pretrained_agent, "_sb3_gap", False):
        manager._load_pretrained_agent = _trained_agent_replay_is_checked(manager._load_pretrained_agent)
    return added
