"""
``torch.compile`` for SB3 models: the checks behind :class:`~sb3_gap.rainbow.Rainbow`'s ``compile=True``,
and :func:`compile_policy` for SB3's DQN, sb3-contrib's QR-DQN, PPO and any other SB3 algorithm.

:func:`compile_policy` compiles the networks of ``model.policy`` in place with ``nn.Module.compile``
(torch >= 2.2): the module's ``__call__`` goes through ``torch.compile`` while the module itself, its
parameters and its ``state_dict`` keys stay as they are, so SB3's training loop, ``polyak_update``,
``save``/``load`` and callbacks see the same objects (``torch.compile(module)`` would instead return an
``OptimizedModule`` wrapper whose ``state_dict`` keys gain an ``_orig_mod.`` prefix). A loaded model is
not compiled: call :func:`compile_policy` again after ``load``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch as th
from torch import nn

from sb3_gap.checks import Refused

#: Values of ``torch.compile(mode=...)`` (None: torch's default).
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Modes that capture CUDA graphs (CUDA devices only).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_compile_mode(mode: Any, device: th.device | str | None = None) -> None:
    """
    Raise ``ValueError`` for a ``torch.compile`` mode that does not exist, or that needs CUDA graphs on a device
    that has none.

    :param mode: A ``torch.compile`` mode
    :param device: The device the compiled code runs on (None: do not check the device)
    """
    if mode not in COMPILE_MODES:
        raise Refused(f"Unknown compile_mode {mode!r}; valid choices: {list(COMPILE_MODES)}")
    if device is not None and mode in CUDA_GRAPH_MODES and th.device(device).type != "cuda":
        valid = [m for m in COMPILE_MODES if m not in CUDA_GRAPH_MODES]
        raise Refused(
            f"compile_mode={mode!r} captures CUDA graphs and needs a CUDA device, got device={th.device(device)}; "
            f"valid choices on {th.device(device).type}: {valid}"
        )


def compiler_problem(device: th.device | str) -> str | None:
    """
    Why ``torch.compile``'s default backend (Inductor) cannot generate code for ``device`` here, or None.

    Inductor builds C++ kernels for CPU (it needs a C++ compiler: ``$CXX``, ``c++``, ``g++`` or ``clang++``)
    and Triton kernels for CUDA (it needs the ``triton`` package, part of torch's CUDA wheels).

    :param device: The device the compiled code runs on
    :return: A one-line reason, or None when compilation can proceed
    """
    kind = th.device(device).type
    if kind == "cpu":
        candidates = [c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c]
        if not any(shutil.which(c) for c in candidates):
            return f"torch.compile needs a C++ compiler for CPU code and none of {candidates} is on PATH"
        return None
    if kind == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            return "torch.compile needs the triton package for CUDA code (it ships with torch's CUDA wheels)"
        return None
    return f"torch.compile's default backend does not support device type {kind!r}; valid: ['cpu', 'cuda']"


def uses_cuda_graphs(mode: str | None, device: th.device | str) -> bool:
    """Whether ``torch.compile(mode=mode)`` captures CUDA graphs on ``device``."""
    return mode in CUDA_GRAPH_MODES and th.device(device).type == "cuda"


def _networks(policy: nn.Module) -> dict[str, nn.Module]:
    """The direct submodules of ``policy`` that hold parameters, each module once (shared extractors too)."""
    seen: set[int] = set()
    out: dict[str, nn.Module] = {}
    for name, module in policy.named_children():
        if id(module) in seen or next(module.parameters(), None) is None:
            continue
        seen.add(id(module))
        out[name] = module
    return out


def compile_policy(model: Any, mode: str | None = None, **compile_kwargs: Any) -> list[str]:
    """
    Compile the networks of an SB3 model's policy in place, keeping modules and ``state_dict`` keys as they are.

    Compiles every direct submodule of ``model.policy`` that holds parameters with ``nn.Module.compile``:
    ``q_net`` and ``q_net_target`` for DQN and QR-DQN (the training loss's forwards and the acting forward),
    ``features_extractor``, ``mlp_extractor``, ``action_net`` and ``value_net`` for PPO and A2C, ``actor``,
    ``critic`` and ``critic_target`` for SAC and TD3. The loss arithmetic, the optimizer step and the
    distributions stay eager. For Rainbow use ``Rainbow(..., compile=True)``, which also compiles the loss.

    Example::

        model = DQN("CnnPolicy", env, policy_kwargs=sb3_gap.policy_kwargs(encoder="nature"))
        compile_policy(model)  # same as model.policy.q_net.compile(); model.policy.q_net_target.compile()
        model.learn(100_000)

    :param model: An SB3 algorithm (or a policy module)
    :param mode: ``torch.compile`` mode; ``"reduce-overhead"`` (CUDA graphs) on CUDA only
    :param compile_kwargs: Other ``torch.compile`` arguments (``backend``, ``dynamic``, ``fullgraph``, ...)
    :return: The names of the compiled submodules
    """
    policy = getattr(model, "policy", model)
    if not isinstance(policy, nn.Module):
        raise Refused(f"compile_policy needs an SB3 model or a policy module, got {type(model).__name__}")
    device = next(policy.parameters()).device
    check_compile_mode(mode, device)
    if compile_kwargs.get("backend", "inductor") == "inductor":
        problem = compiler_problem(device)
        if problem is not None:
            raise RuntimeError(f"compile_policy: {problem}")
    networks = _networks(policy)
    if not networks:
        raise Refused(f"compile_policy: {type(policy).__name__} has no submodule with parameters to compile")
    for module in networks.values():
        module.compile(mode=mode, **compile_kwargs)
    return list(networks)


__all__ = ["COMPILE_MODES", "CUDA_GRAPH_MODES", "check_compile_mode", "compile_policy", "compiler_problem", "uses_cuda_graphs"]
