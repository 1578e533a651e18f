"""``push_to_hub``: evaluate an sb3_gap agent and upload it to the Hugging Face Hub in the RL Zoo's layout.

Built on ``huggingface_hub`` directly: rl_zoo3's ``push_to_hub`` fails to import with today's
``huggingface_sb3``. File names follow rl_zoo3 / huggingface_sb3 (``{algo}-{env}.zip`` with ``/``
in the env id replaced by ``-``, ``config.yml``, ``args.yml``, ``env_kwargs.yml``,
``results.json``, ``replay.mp4``, ``train_eval_metrics.zip``, ``vec_normalize.pkl``), plus the
pickle-free ``model.safetensors`` + ``sb3_gap.json`` (see :mod:`sb3_gap.hub.safe`).

Nothing here writes into the run folder that is pushed: every file is staged in a temporary
folder and uploaded in one commit.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_sb3 import EnvironmentName
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecVideoRecorder

from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.checks import MissingFile, Refused, check_env_id_form, check_int
from sb3_gap.files import write_error
from sb3_gap.hub import safe
from sb3_gap.hub.card import build_card
from sb3_gap.hub.common import (
    ARGS_YML,
    CONFIG_YML,
    ENV_KWARGS_YML,
    METRICS_ZIP,
    README,
    RESULTS_JSON,
    VEC_NORMALIZE_HUB,
    VEC_NORMALIZE_LOCAL,
    VIDEO,
    HubError,
    check_repo_id,
    hub_errors,
    logger,
    model_file_name,
    resolve_endpoint,
)
from sb3_gap.hub.zoo_yaml import load_zoo_yaml


@dataclass(frozen=True)
class PushInfo:
    """What :func:`push_to_hub` uploaded.

    :param repo_id: The Hub repository
    :param commit_url: URL of the single commit
    :param files: Files in the commit
    :param mean_reward: Evaluation mean return
    :param std_reward: Evaluation standard deviation
    """

    repo_id: str
    commit_url: str
    files: list[str]
    mean_reward: float
    std_reward: float


@dataclass
class _Source:
    model: BaseAlgorithm
    algo: str
    env_id: str
    hyperparams: dict[str, Any]
    raw_config: Path | None  # the run's config.yml / args.yml, uploaded byte for byte
    raw_args: Path | None
    env_kwargs: dict[str, Any]
    model_zip: Path | None
    stats_path: str | None
    log_path: Path | None


def _default_buffer_size(cls: type[BaseAlgorithm]) -> int | None:
    import inspect

    param = inspect.signature(cls.__init__).parameters.get("buffer_size")
    return None if param is None else param.default


# Not hyperparameters (run progress, rollout state, local settings): left out of a model's config.yml.
# (Saving a model pickle-free leaves out the rollout state alone: safe._RUN_STATE_ATTRS.)
_NOT_HYPERPARAMS = {
    "ep_info_buffer",
    "ep_success_buffer",
    "start_time",
    "exploration_rate",
    "verbose",
    "tensorboard_log",
    "num_timesteps",
    "seed",
    "n_envs",
}


def _hyperparams(config: dict[str, Any]) -> dict[str, Any]:
    """A Zoo-style ``config.yml`` for a model pushed as an object: its plain hyperparameters."""
    attrs = config["model_attrs"]
    # Class references stay out: the Zoo expects its own string syntax for those.
    out = {k: v for k, v in attrs.items() if not k.startswith("_") and k not in _NOT_HYPERPARAMS and not (isinstance(v, dict) and "__class__" in v)}
    out["policy"] = config["policy"]
    out["n_timesteps"] = attrs.get("num_timesteps", 0)
    return dict(sorted(out.items()))


def _saved_hyperparams(params_path: str) -> tuple[dict[str, Any], str | None]:
    """
    rl_zoo3's ``get_saved_hyperparams(params_path, test_mode=True)`` without its ``yaml.UnsafeLoader`` and
    ``eval``: ``config.yml`` is read by :func:`~sb3_gap.hub.zoo_yaml.load_zoo_yaml` and a ``normalize`` string is
    parsed by :func:`sb3_gap.zoo_config.parse_kwargs_string`.

    :return: ``(hyperparams with normalize / normalize_kwargs, stats path or None)``
    """
    from sb3_gap.zoo_config import parse_kwargs_string

    if not os.path.isdir(params_path):
        return {}, None
    config_file = Path(params_path) / CONFIG_YML
    if config_file.is_file():
        loaded = load_zoo_yaml(config_file, allow_aliases=True) or {}  # a local run: aliases are fine
        if not isinstance(loaded, dict):
            raise Refused(f"{config_file} must hold a mapping of hyperparameters, got {type(loaded).__name__}")
        hyperparams: dict[str, Any] = dict(loaded)
        hyperparams["normalize"] = hyperparams.get("normalize", False)
    else:
        hyperparams = {"normalize": (Path(params_path) / "obs_rms.pkl").is_file()}
    normalize = hyperparams["normalize"]
    if normalize:
        if isinstance(normalize, str):
            kwargs = parse_kwargs_string(normalize)
            if not isinstance(kwargs, dict):
                raise Refused(f"{config_file}: normalize = {normalize!r} must give keyword arguments of VecNormalize")
            normalize_kwargs = dict(kwargs, norm_reward=False)
        elif isinstance(normalize, dict):
            normalize_kwargs = dict(normalize)
        else:
            normalize_kwargs = {"norm_obs": normalize, "norm_reward": False}
        hyperparams["normalize_kwargs"] = normalize_kwargs
    return hyperparams, params_path


def _zoo_source(folder: str | Path, algo: str, env_id: str, exp_id: int, load_best: bool, device: str) -> _Source:
    """Read a Zoo run folder ``<folder>/<algo>/<env>_<exp_id>/`` the way rl_zoo3's enjoy / push_to_hub do."""
    from rl_zoo3.utils import get_model_path

    cls = get_algo(algo)
    env_name = EnvironmentName(env_id)
    try:
        _, model_path, log_path = get_model_path(exp_id, str(folder), algo, env_name, load_best)
    except (AssertionError, ValueError) as e:
        raise MissingFile(
            f"No Zoo run for --algo {algo} --env {env_id} (exp id {exp_id or 'latest'}) under {folder}: {e}. "
            f"Expected {folder}/{algo}/{env_name}_<N>/{env_name}.zip"
        ) from None
    params_path = os.path.join(log_path, env_name)
    hyperparams, stats_path = _saved_hyperparams(params_path)
    # As rl_zoo3's enjoy: the config section's env_kwargs (e.g. MinAtar's full action set), replaced by the
    # command line's --env-kwargs of the training run when it gave some.
    section_kwargs = hyperparams.get("env_kwargs")
    if section_kwargs is not None and not isinstance(section_kwargs, dict):
        raise Refused(f"{params_path}/{CONFIG_YML}: env_kwargs must be a mapping, got {section_kwargs!r}")
    env_kwargs: dict[str, Any] = dict(section_kwargs or {})
    args_path = Path(params_path) / ARGS_YML
    if args_path.is_file():
        loaded = load_zoo_yaml(args_path, allow_aliases=True)  # never yaml.UnsafeLoader: a run folder may come from anywhere
        if not isinstance(loaded, dict):
            raise Refused(f"{args_path} must hold a mapping of the run's arguments, got {type(loaded).__name__}")
        if loaded.get("env_kwargs") is not None:
            env_kwargs = dict(loaded["env_kwargs"])
    # The user's own checkpoint (not a download): SB3's loader is the right tool. a small buffer as in
    # the Zoo's enjoy, so no replay buffer is allocated; the configured size is restored for the card.
    load_kwargs: dict[str, Any] = {}
    if issubclass(cls, OffPolicyAlgorithm):
        load_kwargs["buffer_size"] = safe.INFERENCE_BUFFER_SIZE
    model = cls.load(model_path, device=device, **load_kwargs)
    if isinstance(model, OffPolicyAlgorithm):
        model.buffer_size = int(hyperparams.get("buffer_size") or _default_buffer_size(cls) or 0)
    return _Source(
        model=model,
        algo=algo,
        env_id=env_id,
        hyperparams=hyperparams,
        raw_config=Path(params_path) / CONFIG_YML if (Path(params_path) / CONFIG_YML).is_file() else None,
        raw_args=args_path if args_path.is_file() else None,
        env_kwargs=env_kwargs,
        model_zip=Path(model_path),
        stats_path=stats_path,
        log_path=Path(log_path),
    )


def _evaluate(model: BaseAlgorithm, env: VecEnv, n_eval_episodes: int, deterministic: bool, seed: int, env_id: str) -> dict[str, Any]:
    """SB3's ``evaluate_policy``, recorded with the keys huggingface_sb3 writes to ``results.json``."""
    rewards, lengths = evaluate_policy(
        model, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
    )
    assert isinstance(rewards, list) and isinstance(lengths, list)  # return_episode_rewards=True: per-episode lists
    import numpy as np

    return {
        "mean_reward": float(np.mean(rewards)),
        "std_reward": float(np.std(rewards)),
        "is_deterministic": deterministic,
        "n_eval_episodes": n_eval_episodes,
        "eval_datetime": datetime.datetime.now().isoformat(),
        # sb3_gap additions: the protocol in full.
        "env_id": env_id,
        "seed": seed,
        "exploration_rate": None if deterministic else getattr(model, "exploration_rate", None),
        "episode_rewards": [float(r) for r in rewards],
        "episode_lengths": [int(n) for n in lengths],
    }


def _record_video(model: BaseAlgorithm, make_env: Callable[[], VecEnv], out: Path, length: int, deterministic: bool) -> bool:
    """Best effort, like huggingface_sb3: a failed recording is reported and the push goes on."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = VecVideoRecorder(make_env(), tmp, record_video_trigger=lambda step: step == 0, video_length=length, name_prefix="replay")
            obs = env.reset()
            for _ in range(length):
                action, _ = model.predict(obs, deterministic=deterministic)  # type: ignore[arg-type]  # VecEnv obs, never a tuple here
                obs, _, _, _ = env.step(action)
            env.close()
            videos = sorted(glob.glob(os.path.join(tmp, "*.mp4")))
            if not videos:
                raise RuntimeError("the recorder wrote no video")
            shutil.copyfile(videos[0], out)
        return True
    except Exception as e:  # noqa: BLE001 - any failure only costs the video
        logger.warning("No replay video (%s: %s); pushing without it. Use --no-video to skip recording.", type(e).__name__, e)
        return False


def _metrics_zip(log_path: Path | None, out: Path) -> None:
    """rl_zoo3's ``train_eval_metrics.zip`` (its load_from_hub downloads it unconditionally)."""
    with zipfile.ZipFile(out, "w") as archive:
        if log_path is None:
            return
        if (log_path / "evaluations.npz").is_file():
            archive.write(log_path / "evaluations.npz", arcname="evaluations.npz")
        for monitor in sorted(glob.glob(str(log_path / "*.csv"))):
            archive.write(monitor, arcname=os.path.basename(monitor))


@contextlib.contextmanager
def _naming_on_error(folder: str) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file (a full disk while staging) naming ``folder``."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise write_error(folder, e) from None


def push_to_hub(
    source: BaseAlgorithm | str | Path,
    repo_id: str,
    *,
    algo: str | None = None,
    env_id: str | None = None,
    exp_id: int = 0,
    load_best: bool = False,
    eval_env: VecEnv | None = None,
    hyperparams: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    video: bool = True,
    video_length: int = 1000,
    commit_message: str = "Upload sb3_gap agent",
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    device: str = "auto",
) -> PushInfo:
    """
    Evaluate an agent and upload it, its Zoo config files, ``results.json``, an optional replay video,
    pickle-free weights and a model card to ``repo_id`` in ONE commit.

    :param source: A model, or a Zoo log folder (``logs/``, with ``algo`` and ``env_id``)
    :param repo_id: ``<user or org>/<name>``
    :param algo: Zoo algorithm name (required for a folder; checked against a model)
    :param env_id: Gymnasium id (required)
    :param exp_id: Zoo experiment id (0: latest)
    :param load_best: Push ``best_model.zip`` instead of ``<env>.zip``
    :param eval_env: Evaluation env (default: the Zoo's ``create_test_env`` with the run's config)
    :param hyperparams: ``config.yml`` content for a model source (default: its plain hyperparameters)
    :param env_kwargs: Environment keyword arguments for a model source
    :param n_eval_episodes: Evaluation episodes
    :param deterministic: Greedy actions (ε = 0) in evaluation and video
    :param seed: Evaluation env seed
    :param video: Record ``replay.mp4`` (best effort)
    :param video_length: Video length in steps
    :param commit_message: Commit message
    :param private: Create the repo private
    :param token: Hub token (default: ``HF_TOKEN`` / ``hf auth login``); never printed
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param device: Torch device for loading a Zoo run
    """
    env_id = check_push_args(repo_id, algo, env_id, n_eval_episodes)
    endpoint = resolve_endpoint(endpoint)
    token = _write_token(repo_id, token)
    plain: tuple[dict[str, Any], list[str]] | None = None  # model_to_plain(model), computed once
    if isinstance(source, BaseAlgorithm):
        src, plain = _model_source(source, algo, env_id, hyperparams, env_kwargs)
    else:
        if algo is None:
            raise Refused(f"algo is required to push a Zoo folder; valid choices: {sorted(ALGOS)}")
        check_int("exp_id (--exp-id)", exp_id, 0, example="0 for the latest run, 1, 2")
        src = _zoo_source(source, algo.lower(), env_id, exp_id, load_best, device)
    make_env = _test_env_factory(src, seed)
    results = _evaluate(src.model, eval_env if eval_env is not None else make_env(False), n_eval_episodes, deterministic, seed, env_id)
    logger.info(
        "Evaluated %s on %s: mean_reward %.2f +/- %.2f over %d episodes",
        src.algo, env_id, results["mean_reward"], results["std_reward"], n_eval_episodes,
    )  # fmt: skip

    # Everything is staged in a temporary folder: the run folder is only read.
    with tempfile.TemporaryDirectory(prefix="sb3_gap-push-") as tmp, _naming_on_error(tmp):
        stage = Path(tmp)
        written = _stage_run_files(stage, src, seed, results, plain)
        if video:
            _record_video(src.model, lambda: make_env(True), stage / VIDEO, video_length, deterministic)
        files = sorted(p.name for p in stage.iterdir()) + [README]
        card = build_card(
            src.model, src.algo, env_id, repo_id, results, src.hyperparams, src.env_kwargs, files,
            written["dropped_attrs"], written["policy_kwargs"],
        )  # fmt: skip
        card.save(stage / README)
        commit_url = _upload(stage, files, repo_id, commit_message, private, endpoint, token)
    logger.info("Pushed %d files to %s in one commit: %s", len(files), repo_id, commit_url)
    return PushInfo(repo_id, commit_url, sorted(files), results["mean_reward"], results["std_reward"])


def check_push_args(repo_id: str, algo: str | None, env_id: str | None, n_eval_episodes: int) -> str:
    """
    Refuse what :func:`push_to_hub` cannot push, before anything is loaded: a bad ``repo_id``, an unknown ``algo``,
    no ``env_id`` or one that is not an env id (it names the run folder read and the files pushed: never a path).

    :return: ``env_id``
    :raises ValueError: One line naming the bad value and the valid choices
    """
    check_repo_id(repo_id)
    check_int("n_eval_episodes", n_eval_episodes)
    if algo is not None and algo.lower() not in ALGOS:
        raise Refused(f"Unknown algorithm {algo!r}; valid choices: {sorted(ALGOS)}")
    if env_id is None:
        raise Refused("env_id is required (the Gymnasium id the agent plays, e.g. 'MinAtar/Breakout-v1')")
    check_env_id_form(env_id)
    return env_id


def _write_token(repo_id: str, token: str | None) -> str:
    """``token``, else the one ``hf auth login`` or ``HF_TOKEN`` gives; a :class:`HubError` saying how to get one when none."""
    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError(
            f"No Hugging Face token found, so nothing can be pushed to {repo_id!r}: run `hf auth login` "
            "(or set the HF_TOKEN environment variable) with a token that has write access."
        )
    return token


def _model_source(
    model: BaseAlgorithm, algo: str | None, env_id: str, hyperparams: dict[str, Any] | None, env_kwargs: dict[str, Any] | None
) -> tuple[_Source, tuple[dict[str, Any], list[str]]]:
    """
    What to push for a model given in Python: the model, its Zoo name (refused when ``algo`` names another), the
    hyperparameters (its plain ones unless given) and its plain-data config (:func:`sb3_gap.hub.safe.model_to_plain`).
    """
    name = safe.algo_name(model)
    if algo is not None and algo.lower() != name:
        raise Refused(f"algo={algo!r} does not match the model's class {type(model).__name__} ({name!r})")
    plain = safe.model_to_plain(model, env_id)
    src = _Source(
        model=model,
        algo=name,
        env_id=env_id,
        hyperparams=hyperparams if hyperparams is not None else _hyperparams(plain[0]),
        raw_config=None,
        raw_args=None,
        env_kwargs=dict(env_kwargs or {}),
        model_zip=None,
        stats_path=None,
        log_path=None,
    )
    return src, plain


def _test_env_factory(src: _Source, seed: int) -> Callable[[bool], VecEnv]:
    """A maker of the run's test env, as rl_zoo3's ``enjoy`` builds it (``create_test_env``), rendering when asked."""
    from rl_zoo3.utils import create_test_env

    def make_env(render: bool) -> VecEnv:
        kwargs = dict(src.env_kwargs)
        if render:
            kwargs["render_mode"] = "rgb_array"
        hyperparams = deepcopy(src.hyperparams)
        hyperparams.pop("env_kwargs", None)  # in kwargs already (enjoy removes it too)
        return create_test_env(
            src.env_id,
            n_envs=1,
            stats_path=src.stats_path,
            seed=seed,
            log_dir=None,
            should_render=render,
            hyperparams=hyperparams,
            env_kwargs=kwargs,
        )

    return make_env


def _stage_run_files(stage: Path, src: _Source, seed: int, results: dict[str, Any], plain: tuple[dict[str, Any], list[str]] | None) -> dict[str, Any]:
    """
    Write into ``stage`` the model zip, its pickle-free files, the Zoo's config files (the run's own bytes when it has
    them), ``results.json``, the VecNormalize statistics and the metrics archive.

    :return: What :func:`sb3_gap.hub.safe.save_safe` wrote (its dropped attributes and plain ``policy_kwargs``)
    """
    zip_name = model_file_name(src.algo, src.env_id)
    if src.model_zip is not None:
        shutil.copyfile(src.model_zip, stage / zip_name)
    else:
        src.model.save(stage / zip_name)
    written = safe.save_safe(src.model, stage, src.env_id, plain)
    if src.raw_config is not None:
        shutil.copyfile(src.raw_config, stage / CONFIG_YML)
    else:
        (stage / CONFIG_YML).write_text(yaml.safe_dump(src.hyperparams), encoding="utf-8")
    if src.raw_args is not None:
        shutil.copyfile(src.raw_args, stage / ARGS_YML)
    else:
        args = {"algo": src.algo, "env": src.env_id, "env_kwargs": src.env_kwargs or None, "seed": seed}
        (stage / ARGS_YML).write_text(yaml.safe_dump(args), encoding="utf-8")
    (stage / ENV_KWARGS_YML).write_text(yaml.safe_dump(src.env_kwargs), encoding="utf-8")
    (stage / RESULTS_JSON).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if src.stats_path and (Path(src.stats_path) / VEC_NORMALIZE_LOCAL).is_file():
        shutil.copyfile(Path(src.stats_path) / VEC_NORMALIZE_LOCAL, stage / VEC_NORMALIZE_HUB)
    _metrics_zip(src.log_path, stage / METRICS_ZIP)
    return written


def _upload(stage: Path, files: list[str], repo_id: str, commit_message: str, private: bool | None, endpoint: str, token: str) -> str:
    """Create ``repo_id`` if needed and upload ``files`` from ``stage`` in one commit; return the commit's URL."""
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(f"creating {repo_id!r}", repo_id, endpoint, token):
        api.create_repo(repo_id, exist_ok=True, private=private)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(stage / name)) for name in sorted(files)]
    with hub_errors(f"uploading to {repo_id!r}", repo_id, endpoint, token):
        commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message)
    return commit.commit_url
