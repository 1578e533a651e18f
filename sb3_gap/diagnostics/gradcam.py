"""Grad-CAM saliency (Selvaraju et al. 2017) on φ's last convolutional feature map, for the
greedy action, rendered as a PNG overlay on the frame (Sokar & Castro 2025, Fig. 3).

``sb3-gap gradcam MODEL.zip --algo qrdqn --env MinAtar/Breakout-v1 --out cam.png``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_gap.checks import Refused, check_device
from sb3_gap.diagnostics.metrics import decision_values, prepare_input


def grad_cam(model: object, obs: np.ndarray | th.Tensor, action: int | np.ndarray | None = None) -> np.ndarray:
    """
    Grad-CAM maps for a batch of observations.

    With ``A^k`` the k-th channel of φ's output (the last conv layer's rectified feature map) and
    ``y`` the decision value of the chosen action (Q-value for DQN, quantile mean for QR-DQN,
    expected Q for Rainbow, logit for PPO; see :func:`~sb3_gap.diagnostics.metrics.decision_values`):
    ``α_k = 1/Z Σ_ij ∂y/∂A^k_ij`` (Selvaraju et al. 2017, Eq. 1) and
    ``L = ReLU(Σ_k α_k A^k)`` (Eq. 2), bilinearly upsampled to the input size and scaled to [0, 1]
    per observation.

    :param model: An SB3 model or policy built with :func:`sb3_gap.policy_kwargs`
    :param obs: A batch of raw observations, shape ``(B, *observation_space.shape)``
    :param action: Action(s) to explain; default the greedy action of each observation
    :return: ``(B, H, W)`` float array in [0, 1]
    """
    extractor, policy, obs_t = prepare_input(model, obs)
    if policy is None:
        raise Refused("grad_cam needs an SB3 model or policy (it explains an action), got a bare ConvExtractor")
    maps: list[th.Tensor] = []

    def keep(_m: nn.Module, _inp: tuple, out: th.Tensor) -> None:
        maps.append(out)

    handle = extractor.encoder.register_forward_hook(keep)
    was_training = policy.training
    policy.train(False)
    try:
        with th.enable_grad():
            values = decision_values(policy, obs_t)
            if action is None:
                chosen = values.argmax(dim=-1)
            else:
                chosen = th.as_tensor(np.broadcast_to(np.asarray(action), (values.shape[0],)).copy(), device=values.device).long()
            y = values.gather(1, chosen[:, None]).sum()
            feature_map = maps[-1]
            (grads,) = th.autograd.grad(y, feature_map)
    finally:
        handle.remove()
        policy.train(was_training)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # Eq. 1: global-average-pooled gradients
    cam = th.relu((alpha * feature_map).sum(dim=1, keepdim=True)).detach()  # Eq. 2
    shape = obs_t.shape[2:] if extractor.channels_first else obs_t.shape[1:3]
    cam = F.interpolate(cam.float(), size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy()


def frame_image(obs: np.ndarray, channels_first: bool = True, reduce: str = "max") -> np.ndarray:
    """
    A displayable 2-D (grey) or RGB frame from one observation.

    :param obs: One observation, ``(C, H, W)`` or ``(H, W, C)``
    :param channels_first: Layout of ``obs``
    :param reduce: For C ≠ 3: ``"max"`` over channels (all MinAtar object layers, or a frame stack's
        trail) or ``"last"`` (the newest frame of a stack)
    """
    if reduce not in ("max", "last"):
        raise Refused(f"Unknown frame reduce {reduce!r}; valid choices: ['last', 'max']")
    img = np.asarray(obs, dtype=np.float32)
    img = img if channels_first else np.moveaxis(img, -1, 0)
    if img.shape[0] == 3:
        img = np.moveaxis(img, 0, -1)
        return img / max(float(img.max()), 1e-12)
    img = img.max(axis=0) if reduce == "max" else img[-1]
    return img / max(float(img.max()), 1e-12)


def save_overlay(frame: np.ndarray, cam: np.ndarray, path: str | os.PathLike, title: str = "", alpha: float = 0.5) -> Path:
    """
    Render ``cam`` over ``frame`` with matplotlib and write a PNG atomically
    (:func:`sb3_gap.files.atomic_save_figure`), so an interrupted run never leaves a truncated image.

    :return: The written path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sb3_gap.files import atomic_save_figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    cmap = None if frame.ndim == 3 else "gray"
    axes[0].imshow(frame, cmap=cmap, interpolation="nearest")
    axes[0].set_title("frame")
    axes[1].imshow(frame, cmap=cmap, interpolation="nearest")
    im = axes[1].imshow(cam, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    axes[1].set_title("Grad-CAM")
    for ax in axes:
        ax.axis("off")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    try:
        atomic_save_figure(fig, path, dpi=120, bbox_inches="tight")  # a full disk: an error naming path, no temp file left
    finally:
        plt.close(fig)
    return path


def recorded_env(model_path: str | os.PathLike) -> tuple[str | None, dict | None, str | None]:
    """
    The env a saved model was trained on, when its run folder records it: ``settings.json`` next to a sweep's
    ``model.zip``, or the Zoo's ``<env>/args.yml`` (and ``config.yml``) next to ``<env>.zip`` / ``best_model.zip``.

    :return: ``(env id, env kwargs, file it came from)``, all ``None`` when nothing is recorded
    """
    import json

    from sb3_gap.hub.zoo_yaml import load_zoo_yaml

    folder = Path(model_path).resolve().parent
    settings = folder / "settings.json"
    if settings.is_file():
        try:
            data = json.loads(settings.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("env"), str):
            env_kwargs = (data.get("env_settings") or {}).get("env_kwargs")
            return data["env"], env_kwargs if isinstance(env_kwargs, dict) else None, str(settings)
    args_files = sorted(folder.glob("*/args.yml"))
    if len(args_files) == 1:
        try:
            args = load_zoo_yaml(args_files[0])
            config = load_zoo_yaml(args_files[0].parent / "config.yml") if (args_files[0].parent / "config.yml").is_file() else {}
        except (ValueError, OSError):
            return None, None, None
        if isinstance(args, dict) and isinstance(args.get("env"), str):
            env_kwargs = args.get("env_kwargs") or (config or {}).get("env_kwargs")
            return args["env"], dict(env_kwargs) if isinstance(env_kwargs, dict) else None, str(args_files[0])
    return None, None, None


def saved_algos(model_path: str | os.PathLike) -> tuple[list[str], str] | None:
    """
    The registered algorithms (:data:`sb3_gap.algos.ALGOS`) whose policy an SB3 zip holds, read from its ``data``
    JSON without unpickling anything: the policy class is a by-reference pickle (module and name), disassembled with
    :mod:`pickletools`.

    :param model_path: A zip written by ``model.save()``
    :return: ``(algorithm names, "module.Class" of the policy)``, or ``None`` when the zip does not say (not an SB3
        zip, a policy pickled by value, one of no registered algorithm)
    """
    import base64
    import json
    import pickletools
    import zipfile

    from sb3_gap.algos import ALGOS, get_algo

    try:
        with zipfile.ZipFile(model_path) as archive:
            entry = json.loads(archive.read("data")).get("policy_class", {})
        ops = list(pickletools.genops(base64.b64decode(entry[":serialized:"])))
    except Exception:  # noqa: BLE001 - whatever the zip holds, the check is skipped and SB3's loader speaks
        return None
    refs = [arg for _, arg, _ in ops if isinstance(arg, str)]
    if [op.name for op, _, _ in ops].count("STACK_GLOBAL") != 1 or len(refs) != 2:  # one global by reference: (module, name)
        return None
    module, name = refs
    held = [algo for algo in ALGOS if any((c.__module__, c.__qualname__) == (module, name) for c in get_algo(algo).policy_aliases.values())]
    return (held, f"{module}.{name}") if held else None


def _observation_from_env(model: object, env_id: str, steps: int, seed: int, env_kwargs: dict | None = None) -> np.ndarray:
    """Play ``steps`` greedy steps in ``env_id`` and return the last observation, shaped like the model's.

    :raises ValueError: When the env's observations or actions are not the model's (another game)
    """
    from stable_baselines3.common.vec_env import VecTransposeImage, is_vecenv_wrapped

    from sb3_gap.envs.protocols import check_env_registered, protocol_for  # the evaluation env of each id's protocol, as the sweeps use

    space = model.observation_space  # type: ignore[attr-defined]
    actions = model.action_space  # type: ignore[attr-defined]
    check_env_registered(env_id)
    kwargs = {"env_kwargs": env_kwargs} if env_kwargs else {}
    venv = protocol_for(env_id).make_env(env_id, 1, seed, False, **kwargs)
    try:
        if venv.observation_space.shape != space.shape and not is_vecenv_wrapped(venv, VecTransposeImage):
            venv = VecTransposeImage(venv)
        if venv.observation_space.shape != space.shape:
            raise Refused(f"Env {env_id!r} gives observations of shape {venv.observation_space.shape}, the model expects {space.shape}")
        if venv.action_space != actions:
            raise Refused(
                f"Env {env_id!r} has actions {venv.action_space}, the model {actions}: it was trained on another env "
                "(or with other env_kwargs); pass the env it was trained on"
            )
        obs = venv.reset()
        for _ in range(steps):
            action, _ = model.predict(obs, deterministic=True)  # type: ignore[attr-defined]
            obs = venv.step(action)[0]
    finally:
        venv.close()
    assert isinstance(obs, np.ndarray)  # image envs only (the extractor refuses others)
    return obs[0]


def main(argv: list[str] | None = None) -> None:
    """``sb3-gap gradcam``: write a Grad-CAM PNG for a saved model."""
    from sb3_gap.algos import ALGOS

    parser = argparse.ArgumentParser(prog="sb3-gap gradcam", description=main.__doc__)
    parser.add_argument("model", help="path of a model saved with model.save() (.zip)")
    parser.add_argument("--algo", required=True, choices=sorted(ALGOS), help="algorithm that saved the model")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--env", help="env id to take a frame from (e.g. MinAtar/Breakout-v1, ALE/Pong-v5; default: the one its run folder records)")
    src.add_argument("--obs", help=".npy file with one observation (or a batch; the first is used)")
    parser.add_argument("--steps", type=int, default=50, help="greedy steps played before the frame (with --env)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--action", type=int, default=None, help="action to explain (default: the greedy one)")
    parser.add_argument("--frame", choices=["max", "last"], default="max", help="how to show a multi-channel observation")
    parser.add_argument("--out", default="gradcam.png", help="PNG path to write")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    try:
        _run(args)
    except Refused as e:
        text = str(e).strip() or type(e).__name__
        raise SystemExit(f"sb3-gap gradcam: error: {text.splitlines()[0]}") from None


def _run(args: argparse.Namespace) -> None:
    """The body of :func:`main`, raising :class:`~sb3_gap.checks.Refused` for what the user can fix."""
    import zipfile

    from sb3_gap.algos import get_algo
    from sb3_gap.checks import check_env_id_form
    from sb3_gap.envs.protocols import check_env_registered
    from sb3_gap.params import find_extractor

    if args.env is not None:
        check_env_id_form(args.env)
    path = Path(args.model)
    if not path.is_file():
        raise Refused(f"model file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    env_id, env_kwargs, source = recorded_env(path)
    if args.env and env_id and args.env != env_id:
        raise Refused(f"{path.name} was trained on {env_id!r} (recorded in {source}), not on --env {args.env!r}; pass --env {env_id}")
    if not args.env and not args.obs:
        if env_id is None:
            raise Refused(f"pass --env <id> or --obs <file.npy>: {path.name}'s folder records no env")
        args.env = env_id
    if args.env:
        check_env_registered(args.env)
    check_device(args.device, "--device")
    held = saved_algos(path)
    if held is not None and args.algo not in held[0]:
        raise Refused(
            f"{path.name} holds a {' or '.join(held[0])} model (policy {held[1]}), not the --algo {args.algo} given: pass --algo {held[0][0]}"
        )
    th.set_num_threads(max(1, min(th.get_num_threads(), 2)))
    try:
        model = get_algo(args.algo).load(str(path), device=args.device)
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        raise Refused(f"{path} is not a model saved by {args.algo} ({type(e).__name__}: {e})") from None
    if args.env:
        obs = _observation_from_env(model, args.env, args.steps, args.seed, env_kwargs if args.env == env_id else None)
    else:
        try:
            obs = np.load(args.obs)  # allow_pickle=False: a pickled file is refused
        except (OSError, ValueError) as e:
            raise Refused(f"--obs {args.obs}: cannot read a .npy array ({e})") from None
        if obs.shape == model.observation_space.shape:
            pass
        elif obs.shape[1:] == model.observation_space.shape:
            obs = obs[0]
        else:
            raise Refused(f"--obs has shape {obs.shape}, the model expects {model.observation_space.shape}")
    if args.action is not None and hasattr(model.action_space, "n") and not 0 <= args.action < int(model.action_space.n):
        raise Refused(f"--action {args.action} is not an action of the model ({model.action_space}); valid: 0..{int(model.action_space.n) - 1}")
    cam = grad_cam(model, obs[None], action=args.action)[0]
    with th.no_grad():
        obs_t, _ = model.policy.obs_to_tensor(obs[None])
        assert isinstance(obs_t, th.Tensor)  # an image observation, not a dict
        values = decision_values(model.policy, obs_t)[0]
    action = int(values.argmax()) if args.action is None else args.action
    frame = frame_image(obs, channels_first=find_extractor(model).channels_first, reduce=args.frame)
    title = f"{path.name} · {args.algo} · action {action}"
    out = save_overlay(frame, cam, args.out, title=title)
    print(f"wrote {out}")
