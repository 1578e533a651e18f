"""Saving and loading a Rainbow: SB3's ``save``/``load`` with the overrides, parameters and replay buffers that would
not fit the model refused in one line, and models saved before an attribute existed loaded with its old behaviour."""

from __future__ import annotations

import io
import pathlib
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv

from sb3_gap.algo_args import check_model_attributes
from sb3_gap.checks import Refused
from sb3_gap.rainbow.buffers import REPLAY_SETTINGS, RainbowReplayBuffer, infer_frame_stack, rainbow_replay_mismatches
from sb3_gap.rainbow.config import HeadConfig
from sb3_gap.rainbow.policies import RainbowPolicy
from sb3_gap.replay import replay_mismatch_error, replay_mismatches

SelfRainbowSaving = TypeVar("SelfRainbowSaving", bound="RainbowSaving")

#: Constructor arguments that shape the network: fixed by the saved weights, refused as overrides by :meth:`Rainbow.load`.
ARCHITECTURE_ARGS = HeadConfig.names()
#: Constructor arguments that decide what the replay stores and how it samples (checked by :meth:`Rainbow.load_replay_buffer`).
REPLAY_ARGS = tuple(REPLAY_SETTINGS)
#: Attributes that models saved before them lack, with the behaviour those models had.
ADDED_LATER: dict[str, Any] = {"per_sampling": "stratified", "eval_epsilon": None, "head_init": None}


class RainbowSaving(OffPolicyAlgorithm):
    """
    The saving half of :class:`~sb3_gap.rainbow.Rainbow`: what is saved, and the checks of what is loaded into a model
    (constructor overrides, parameters, replay buffers).
    """

    ARCHITECTURE_ARGS: ClassVar[tuple[str, ...]] = ARCHITECTURE_ARGS
    policy: RainbowPolicy
    frame_stack: int

    def _fill_added_later(self) -> None:
        """Give a model saved before an attribute of :data:`ADDED_LATER` existed the behaviour it had then."""
        for name, before in ADDED_LATER.items():
            if name not in self.__dict__:
                setattr(self, name, before)

    def _detect_frame_stack(self) -> int:
        """``n_stack`` of an SB3 ``VecFrameStack`` whose frames the replay can store once, else 1."""
        return self.frame_stack if self.env is None else infer_frame_stack(self.env)

    @classmethod
    def load(
        cls: type[SelfRainbowSaving],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfRainbowSaving:
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
        # compile and compile_mode are saved; the compiled functions and their timings are rebuilt by _setup_model, and
        # the evaluation generator is seeded again from the model's seed, as SB3 seeds the global generators on load.
        return [*super()._excluded_save_params(), "q_net", "q_net_target", "_compiled_update", "compile_times", "_eval_rng"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []
