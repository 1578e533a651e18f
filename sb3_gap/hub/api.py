"""Push sb3_gap agents to the Hugging Face Hub and pull them back, in the RL Zoo's layout.

Built on ``huggingface_hub`` directly: rl_zoo3's ``push_to_hub`` fails to import with today's
``huggingface_sb3``. File names follow rl_zoo3 / huggingface_sb3 (``{algo}-{env}.zip`` with ``/``
in the env id replaced by ``-``, ``config.yml``, ``args.yml``, ``env_kwargs.yml``,
``results.json``, ``replay.mp4``, ``train_eval_metrics.zip``, ``vec_normalize.pkl``), plus the
pickle-free ``model.safetensors`` + ``sb3_gap.json`` (see :mod:`sb3_gap.hub.safe`).

Nothing here writes into the run folder that is pushed; pulls build a new Zoo run folder in a
temporary directory and move it into place in one ``os.replace``.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_sb3 import EnvironmentName, ModelName
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecVideoRecorder

from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.hub import safe
from sb3_gap.hub.card import build_card

logger = logging.getLogger("sb3_gap.hub")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network exceptions of whichever HTTP library this huggingface_hub uses (httpx2 in 2.x, httpx in 1.x, requests before)."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()

# rl_zoo3's names on the Hub (push_to_hub.py / load_from_hub.py).
CONFIG_YML, ARGS_YML, ENV_KWARGS_YML, RESULTS_JSON = "config.yml", "args.yml", "env_kwargs.yml", "results.json"
VEC_NORMALIZE_HUB, VEC_NORMALIZE_LOCAL = "vec_normalize.pkl", "vecnormalize.pkl"
METRICS_ZIP, VIDEO, README = "train_eval_metrics.zip", "replay.mp4", "README.md"

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


class HubError(RuntimeError):
    """A Hub operation failed; the message says what went wrong and how to fix it. No token is ever in it."""


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


@dataclass(frozen=True)
class LoadInfo:
    """How :func:`load_from_hub` / :func:`pull_from_hub` got the model.

    :param repo_id: The Hub repository
    :param revision: The commit the files came from
    :param path: ``"safetensors"`` (pickle-free) or ``"pickle"`` (the SB3 zip, opted in)
    :param algo: Zoo name of the algorithm
    :param env_id: Environment id, when recorded
    :param files: Local paths of the downloaded files
    :param log_path: The Zoo run folder (``pull_from_hub`` only)
    """

    repo_id: str
    revision: str
    path: str
    algo: str
    env_id: str | None
    files: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


@contextlib.contextmanager
def _hub_errors(action: str, repo_id: str, endpoint: str, token: str | None) -> Iterator[None]:
    """Turn huggingface_hub / network exceptions into a :class:`HubError` that says what to do.

    The error is raised after the ``except`` block, so it carries no ``__context__`` (the original
    exception, with its request details) into tracebacks.
    """
    msg: str | None = None
    try:
        yield
    except HubError:
        raise
    except RepositoryNotFoundError:
        msg = (
            f"Repository {repo_id!r} was not found on {endpoint} while {action} (or it is private and the "
            "token cannot see it): check --repo-id, and log in with `hf auth login` for private repos."
        )
    except RevisionNotFoundError:
        msg = f"Revision not found in {repo_id!r} while {action}: check --revision."
    except EntryNotFoundError as e:
        msg = f"A file is missing from {repo_id!r} while {action}: {_first_line(e)}"
    except OfflineModeIsEnabled:
        msg = f"HF_HUB_OFFLINE is set, so {action} cannot reach the Hub: unset HF_HUB_OFFLINE."
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            msg = (
                f"The Hub refused the token while {action} (HTTP {status}): log in again with `hf auth login`, "
                f"or set HF_TOKEN to a token with write access to {repo_id!r}."
            )
        else:
            msg = f"The Hub answered HTTP {status} while {action}: {_first_line(e)}. Nothing was changed locally; retry later."
    except _TRANSPORT_ERRORS as e:
        msg = (
            f"Cannot complete {action}: the connection to {endpoint} failed or was interrupted ({type(e).__name__}). "
            "Check your network (and HF_ENDPOINT); nothing local was modified. A Hub commit is all-or-nothing, "
            "so an interrupted push left the repository as it was: re-run the same command."
        )
    if msg is not None:
        raise HubError(_scrub(msg, token))


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise ValueError(f"repo_id must look like '<user or org>/<name>' (letters, digits, '-', '_', '.'), got {repo_id!r}")


def _endpoint(endpoint: str | None) -> str:
    """``endpoint``, else ``HF_ENDPOINT`` (read now, not at import), else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT).rstrip("/")


# ----------------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------------


def model_file_name(algo: str, env_id: str) -> str:
    """``{algo}-{env}.zip`` as rl_zoo3 / huggingface_sb3 name it (``/`` in the env id becomes ``-``)."""
    return ModelName(algo, EnvironmentName(env_id)).filename


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
_NOT_HYPERPARAMS = {"ep_info_buffer", "ep_success_buffer", "start_time", "exploration_rate", "verbose", "tensorboard_log", "num_timesteps", "seed", "n_envs"}


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
    ``eval``: ``config.yml`` is read by :func:`safe.load_zoo_yaml` and a ``normalize`` string is parsed by
    :func:`sb3_gap.zoo_config.parse_kwargs_string`.

    :return: ``(hyperparams with normalize / normalize_kwargs, stats path or None)``
    """
    from sb3_gap.zoo_config import parse_kwargs_string

    if not os.path.isdir(params_path):
        return {}, None
    config_file = Path(params_path) / CONFIG_YML
    if config_file.is_file():
        loaded = safe.load_zoo_yaml(config_file) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file} must hold a mapping of hyperparameters, got {type(loaded).__name__}")
        hyperparams: dict[str, Any] = dict(loaded)
        hyperparams["normalize"] = hyperparams.get("normalize", False)
    else:
        hyperparams = {"normalize": (Path(params_path) / "obs_rms.pkl").is_file()}
    normalize = hyperparams["normalize"]
    if normalize:
        if isinstance(normalize, str):
            kwargs = parse_kwargs_string(normalize)
            if not isinstance(kwargs, dict):
                raise ValueError(f"{config_file}: normalize = {normalize!r} must give keyword arguments of VecNormalize")
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
        raise FileNotFoundError(
            f"No Zoo run for --algo {algo} --env {env_id} (exp id {exp_id or 'latest'}) under {folder}: {e}. "
            f"Expected {folder}/{algo}/{env_name}_<N>/{env_name}.zip"
        ) from None
    params_path = os.path.join(log_path, env_name)
    hyperparams, stats_path = _saved_hyperparams(params_path)
    # As rl_zoo3's enjoy: the config section's env_kwargs (e.g. MinAtar's full action set), replaced by the
    # command line's --env-kwargs of the training run when it gave some.
    section_kwargs = hyperparams.get("env_kwargs")
    if section_kwargs is not None and not isinstance(section_kwargs, dict):
        raise ValueError(f"{params_path}/{CONFIG_YML}: env_kwargs must be a mapping, got {section_kwargs!r}")
    env_kwargs: dict[str, Any] = dict(section_kwargs or {})
    args_path = Path(params_path) / ARGS_YML
    if args_path.is_file():
        loaded = safe.load_zoo_yaml(args_path)  # never yaml.UnsafeLoader: a run folder may come from anywhere
        if not isinstance(loaded, dict):
            raise ValueError(f"{args_path} must hold a mapping of the run's arguments, got {type(loaded).__name__}")
        if loaded.get("env_kwargs") is not None:
            env_kwargs = dict(loaded["env_kwargs"])
    # The user's own checkpoint (not a download): SB3's loader is the right tool. a small buffer as in
    # the Zoo's enjoy, so no replay buffer is allocated; the configured size is restored for the card.
    load_kwargs: dict[str, Any] = {}
    if issubclass(cls, OffPolicyAlgorithm):
        load_kwargs["buffer_size"] = safe.INFERENCE_BUFFER_SIZE
    model = cls.load(model_path, device=device, **load_kwargs)
    if "buffer_size" in load_kwargs:
        model.buffer_size = hyperparams.get("buffer_size", _default_buffer_size(cls))
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


def _evaluate(
    model: BaseAlgorithm, env: VecEnv, n_eval_episodes: int, deterministic: bool, seed: int, env_id: str
) -> dict[str, Any]:
    """SB3's ``evaluate_policy``, recorded with the keys huggingface_sb3 writes to ``results.json``."""
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False)
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
                action, _ = model.predict(obs, deterministic=deterministic)
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
    _check_repo_id(repo_id)
    if isinstance(n_eval_episodes, bool) or not isinstance(n_eval_episodes, int) or n_eval_episodes < 1:
        raise ValueError(f"n_eval_episodes must be a positive integer, got {n_eval_episodes!r}")
    if algo is not None and algo.lower() not in ALGOS:
        raise ValueError(f"Unknown algorithm {algo!r}; valid choices: {sorted(ALGOS)}")
    if env_id is None:
        raise ValueError("env_id is required (the Gymnasium id the agent plays, e.g. 'MinAtar/Breakout-v1')")
    endpoint = _endpoint(endpoint)
    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError(
            f"No Hugging Face token found, so nothing can be pushed to {repo_id!r}: run `hf auth login` "
            "(or set the HF_TOKEN environment variable) with a token that has write access."
        )

    plain: tuple[dict[str, Any], list[str]] | None = None  # model_to_plain(model), computed once
    if isinstance(source, BaseAlgorithm):
        name = safe.algo_name(source)
        if algo is not None and algo.lower() != name:
            raise ValueError(f"algo={algo!r} does not match the model's class {type(source).__name__} ({name!r})")
        plain = safe.model_to_plain(source, env_id)
        src = _Source(
            model=source,
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
    else:
        if algo is None:
            raise ValueError(f"algo is required to push a Zoo folder; valid choices: {sorted(ALGOS)}")
        src = _zoo_source(source, algo.lower(), env_id, exp_id, load_best, device)

    from rl_zoo3.utils import create_test_env

    def make_env(render: bool = False) -> VecEnv:
        kwargs = dict(src.env_kwargs)
        if render:
            kwargs["render_mode"] = "rgb_array"
        hyperparams = deepcopy(src.hyperparams)
        hyperparams.pop("env_kwargs", None)  # in kwargs already (enjoy removes it too)
        return create_test_env(
            env_id, n_envs=1, stats_path=src.stats_path, seed=seed, log_dir=None, should_render=render,
            hyperparams=hyperparams, env_kwargs=kwargs,
        )

    env = eval_env if eval_env is not None else make_env()
    results = _evaluate(src.model, env, n_eval_episodes, deterministic, seed, env_id)
    logger.info("Evaluated %s on %s: mean_reward %.2f +/- %.2f over %d episodes", src.algo, env_id, results["mean_reward"], results["std_reward"], n_eval_episodes)

    # Everything is staged in a temporary folder: the run folder is only read.
    with tempfile.TemporaryDirectory(prefix="sb3_gap-push-") as tmp:
        stage = Path(tmp)
        zip_name = model_file_name(src.algo, env_id)
        if src.model_zip is not None:
            shutil.copyfile(src.model_zip, stage / zip_name)
        else:
            src.model.save(stage / zip_name)
        written = safe.save_safe(src.model, stage, env_id, plain)
        if src.raw_config is not None:
            shutil.copyfile(src.raw_config, stage / CONFIG_YML)
        else:
            (stage / CONFIG_YML).write_text(yaml.safe_dump(src.hyperparams), encoding="utf-8")
        if src.raw_args is not None:
            shutil.copyfile(src.raw_args, stage / ARGS_YML)
        else:
            args = {"algo": src.algo, "env": env_id, "env_kwargs": src.env_kwargs or None, "seed": seed}
            (stage / ARGS_YML).write_text(yaml.safe_dump(args), encoding="utf-8")
        (stage / ENV_KWARGS_YML).write_text(yaml.safe_dump(src.env_kwargs), encoding="utf-8")
        (stage / RESULTS_JSON).write_text(json.dumps(results, indent=2), encoding="utf-8")
        if src.stats_path and (Path(src.stats_path) / VEC_NORMALIZE_LOCAL).is_file():
            shutil.copyfile(Path(src.stats_path) / VEC_NORMALIZE_LOCAL, stage / VEC_NORMALIZE_HUB)
        _metrics_zip(src.log_path, stage / METRICS_ZIP)
        if video:
            _record_video(src.model, lambda: make_env(render=True), stage / VIDEO, video_length, deterministic)
        files = sorted(p.name for p in stage.iterdir()) + [README]
        card = build_card(
            src.model, src.algo, env_id, repo_id, results, src.hyperparams, src.env_kwargs, files,
            written["dropped_attrs"], written["policy_kwargs"],
        )  # fmt: skip
        card.save(stage / README)

        api = HfApi(endpoint=endpoint, token=token)
        with _hub_errors(f"creating {repo_id!r}", repo_id, endpoint, token):
            api.create_repo(repo_id, exist_ok=True, private=private)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(stage / name)) for name in sorted(files)]
        with _hub_errors(f"uploading to {repo_id!r}", repo_id, endpoint, token):
            commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message)
    logger.info("Pushed %d files to %s in one commit: %s", len(files), repo_id, commit.commit_url)
    return PushInfo(repo_id, commit.commit_url, sorted(files), results["mean_reward"], results["std_reward"])


# ----------------------------------------------------------------------------------------------
# Download, load, pull
# ----------------------------------------------------------------------------------------------


class _Download:
    """The files of one commit of a repo, downloaded through huggingface_hub's cache on demand."""

    def __init__(self, repo_id: str, revision: str | None, token: str | None, endpoint: str | None, cache_dir: str | Path | None) -> None:
        _check_repo_id(repo_id)
        self.repo_id, self.token, self.cache_dir = repo_id, token, cache_dir
        self.endpoint = _endpoint(endpoint)
        self.api = HfApi(endpoint=self.endpoint, token=token)
        with self._errors("reading the repository"):
            info = self.api.model_info(repo_id, revision=revision)
            self.revision: str = info.sha or (revision or "main")
            self.files = {sibling.rfilename for sibling in info.siblings or []}

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _hub_errors(action, self.repo_id, self.endpoint, self.token)

    def get(self, name: str) -> str:
        with self._errors(f"downloading {name!r}"):
            return str(self.api.hf_hub_download(self.repo_id, name, revision=self.revision, cache_dir=self.cache_dir))


def _safe_info(dl: _Download) -> dict[str, Any] | None:
    if safe.CONFIG_FILE in dl.files and safe.WEIGHTS_FILE in dl.files:
        return safe.read_config(dl.get(safe.CONFIG_FILE))
    return None


def _check_downloaded_yaml(repo_id: str, files: dict[str, str]) -> dict[str, Any]:
    """
    Read the downloaded Zoo YAML files as plain data (:func:`safe.load_zoo_yaml`) and refuse what the Zoo would
    execute or write from them (:func:`safe.check_zoo_config`); path-like ``env_kwargs`` are refused too.

    :return: The ``config.yml`` content (``{}`` when there is none)
    :raises ValueError: A file holds YAML that is not plain data
    :raises HubError: Naming the repository, the file and the value at fault
    """
    loaded = {name: safe.load_zoo_yaml(files[name]) for name in (CONFIG_YML, ARGS_YML, ENV_KWARGS_YML) if name in files}
    try:
        hyperparams = loaded.get(CONFIG_YML) or {}
        safe.check_zoo_config(hyperparams, CONFIG_YML)
        env_kwargs = [(CONFIG_YML, hyperparams.get("env_kwargs")), (ENV_KWARGS_YML, loaded.get(ENV_KWARGS_YML))]
        if isinstance(loaded.get(ARGS_YML), dict):
            env_kwargs.append((ARGS_YML, loaded[ARGS_YML].get("env_kwargs")))
        for name, kwargs in env_kwargs:
            if isinstance(kwargs, str):
                safe._check_expression(kwargs, f"{name}: env_kwargs")
            elif kwargs is not None and safe._looks_like_path(kwargs):
                raise ValueError(f"{name}: env_kwargs {kwargs!r} name files or folders on this machine; {safe.REFUSED}")
    except ValueError as e:
        raise HubError(f"{repo_id!r}: {e}") from None
    return dict(hyperparams)


def _refuse_pickle(repo_id: str) -> HubError:
    return HubError(
        f"{repo_id!r} has no pickle-free weights ({safe.CONFIG_FILE} + {safe.WEIGHTS_FILE}; it was not pushed by sb3_gap). "
        "Its Stable-Baselines3 .zip can only be loaded by unpickling, which runs code from the download: "
        "pass allow_pickle=True (CLI: --allow-pickle) only if you trust the repository's author."
    )


def _zip_name(dl: _Download, algo: str | None, env_id: str | None) -> str:
    if algo and env_id:
        name = model_file_name(algo, env_id)
        if name not in dl.files:
            raise HubError(f"{dl.repo_id!r} has no {name!r}; files: {sorted(dl.files)}. Check --algo and --env.")
        return name
    zips = sorted(f for f in dl.files if f.endswith(".zip") and f != METRICS_ZIP and "/" not in f)
    if len(zips) != 1:
        raise HubError(f"Cannot tell which model zip to load from {dl.repo_id!r} (found {zips}): pass algo and env_id.")
    return zips[0]


def load_from_hub(
    repo_id: str,
    *,
    allow_pickle: bool = False,
    algo: str | None = None,
    env_id: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    return_info: bool = False,
    **overrides: Any,
) -> BaseAlgorithm | tuple[BaseAlgorithm, LoadInfo]:
    """
    Download an agent and rebuild it, ready to ``predict``.

    Pickle-free by default: from ``model.safetensors`` + ``sb3_gap.json`` (nothing from the download
    is unpickled, imported or evaluated). A repository without them (e.g. pushed by rl_zoo3) is
    loaded from its SB3 zip only with ``allow_pickle=True``. The path taken is logged and returned
    in :class:`LoadInfo` with ``return_info=True``.

    :param repo_id: ``<user or org>/<name>``
    :param allow_pickle: Allow unpickling the SB3 zip when there are no pickle-free files
    :param algo: Zoo algorithm name (needed for zip-only repos with several zips)
    :param env_id: Environment id (same)
    :param revision: Branch, tag or commit
    :param token: Hub token for private repos
    :param endpoint: Hub URL
    :param cache_dir: huggingface_hub cache folder
    :param device: Torch device
    :param return_info: Return ``(model, LoadInfo)``
    :param overrides: Model attributes to set on load (e.g. ``buffer_size`` to continue training)
    """
    dl = _Download(repo_id, revision, token, endpoint, cache_dir)
    config = _safe_info(dl)
    if config is not None:
        weights = dl.get(safe.WEIGHTS_FILE)
        model = safe.build_model(config, weights, device=device, **overrides)
        info = LoadInfo(repo_id, dl.revision, "safetensors", config["algo"], config.get("env_id"), {safe.WEIGHTS_FILE: weights})
        if VEC_NORMALIZE_HUB in dl.files:
            logger.warning(
                "%s was trained with VecNormalize: its statistics (%s) are published only pickled and were NOT loaded; "
                "wrap your env in VecNormalize with the right statistics, or pull with --allow-pickle if you trust the author",
                repo_id, VEC_NORMALIZE_HUB,
            )
        logger.info("Loaded %s from %s@%s via the pickle-free path (safetensors + %s)", type(model).__name__, repo_id, dl.revision[:8], safe.CONFIG_FILE)
    else:
        if not allow_pickle:
            raise _refuse_pickle(repo_id)
        if algo is None:
            raise ValueError(f"algo is required to load a zip-only repository; valid choices: {sorted(ALGOS)}")
        cls = get_algo(algo)
        name = _zip_name(dl, algo.lower(), env_id)
        path = dl.get(name)
        kwargs: dict[str, Any] = {"buffer_size": safe.INFERENCE_BUFFER_SIZE} if issubclass(cls, OffPolicyAlgorithm) else {}
        kwargs.update(overrides)
        model = cls.load(path, device=device, **kwargs)
        info = LoadInfo(repo_id, dl.revision, "pickle", algo.lower(), env_id, {name: path})
        logger.warning("Loaded %s from %s@%s by UNPICKLING %s (allow_pickle=True)", type(model).__name__, repo_id, dl.revision[:8], name)
    return (model, info) if return_info else model


def _next_run_folder(folder: Path, algo: str, env_name: str, exp_id: int) -> Path:
    from rl_zoo3.utils import get_latest_run_id

    base = folder / algo
    if exp_id == 0:
        exp_id = get_latest_run_id(str(base), env_name) + 1
    target = base / f"{env_name}_{exp_id}"
    if target.exists():
        raise FileExistsError(f"{target} already exists and is never overwritten: pass --exp-id 0 for a new run id, or another -f folder")
    return target


def _extract_metrics(archive: str, out: Path) -> None:
    """Unpack ``train_eval_metrics.zip``: only flat ``.npz`` / ``.csv`` members (no paths out of ``out``)."""
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            name = member.filename
            if "/" in name or "\\" in name or name.startswith(".") or not name.endswith((".npz", ".csv")):
                logger.warning("Skipping %r in %s", name, METRICS_ZIP)
                continue
            with z.open(member) as src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def pull_from_hub(
    repo_id: str,
    folder: str | Path,
    *,
    algo: str | None = None,
    env_id: str | None = None,
    exp_id: int = 0,
    allow_pickle: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> LoadInfo:
    """
    Download an agent into a new Zoo run folder ``<folder>/<algo>/<env>_<N>/`` for ``rl_zoo3.enjoy``.

    Pickle-free by default: the ``<env>.zip`` is written locally by rebuilding the model from
    ``model.safetensors`` + ``sb3_gap.json``, and the YAML files are checked to hold plain data
    only (nothing the Zoo would ``eval`` or import from outside trusted packages). With
    ``allow_pickle=True`` zip-only repositories are accepted and their files copied as they are.
    An existing folder is never overwritten; the folder appears complete or not at all.

    :param repo_id: ``<user or org>/<name>``
    :param folder: Zoo log folder (``-f``)
    :param algo: Zoo algorithm name (default: from ``sb3_gap.json``)
    :param env_id: Environment id (default: from ``sb3_gap.json``)
    :param exp_id: Run id to create (0: next free)
    :param allow_pickle: Accept the SB3 zip and pickled files as they are
    :param revision: Branch, tag or commit
    :param token: Hub token for private repos
    :param endpoint: Hub URL
    :param cache_dir: huggingface_hub cache folder
    """
    dl = _Download(repo_id, revision, token, endpoint, cache_dir)
    config = _safe_info(dl)
    if config is not None:
        for given, stored, what in ((algo, config["algo"], "algo"), (env_id, config.get("env_id"), "env")):
            if given is not None and stored is not None and given.lower() != str(stored).lower():
                raise ValueError(f"--{what} {given!r} does not match the repository's {what} {stored!r}")
        algo, env_id = config["algo"], env_id or config.get("env_id")
    elif not allow_pickle:
        raise _refuse_pickle(repo_id)
    if algo is None or env_id is None:
        raise ValueError("algo and env_id are required for a repository without sb3_gap.json (--algo, --env)")
    algo = algo.lower()
    get_algo(algo)
    env_name = EnvironmentName(env_id)
    folder = Path(folder)
    target = _next_run_folder(folder, algo, env_name, exp_id)

    files: dict[str, str] = {}
    for name in (CONFIG_YML, ARGS_YML, ENV_KWARGS_YML, RESULTS_JSON, README, METRICS_ZIP, VEC_NORMALIZE_HUB):
        if name in dl.files:
            files[name] = dl.get(name)

    # Pickle-free whenever the repository allows it; allow_pickle only permits the pickled model zip (and the
    # pickled VecNormalize statistics). The YAML files are checked on every path: what the Zoo's enjoy would
    # evaluate or import from them must pass the same allow-list whatever the flag.
    path = "safetensors" if config is not None else "pickle"
    hyperparams = _check_downloaded_yaml(repo_id, files)
    if path == "safetensors" and hyperparams.get("normalize"):
        if not allow_pickle:
            raise HubError(
                f"{repo_id!r} needs VecNormalize statistics, which are only published pickled ({VEC_NORMALIZE_HUB}): "
                "pass --allow-pickle if you trust the repository's author."
            )
        if VEC_NORMALIZE_HUB not in files:
            raise HubError(f"{repo_id!r} says normalize: {hyperparams['normalize']!r} but publishes no {VEC_NORMALIZE_HUB}")

    folder.mkdir(parents=True, exist_ok=True)
    (folder / algo).mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{env_name}-pull-", dir=folder / algo))
    try:
        params = tmp / env_name
        params.mkdir()
        zip_out = tmp / f"{env_name}.zip"
        if path == "safetensors":
            weights = dl.get(safe.WEIGHTS_FILE)
            files[safe.WEIGHTS_FILE] = weights
            # The zip the Zoo will unpickle is written here, by this code, from plain data.
            rebuilt = safe.build_model(config, weights, device="cpu")  # type: ignore[arg-type]
            if "buffer_size" in config["model_attrs"]:
                rebuilt.buffer_size = config["model_attrs"]["buffer_size"]  # the trained value, not the inference one
            rebuilt.save(zip_out)
            if hyperparams.get("normalize"):  # only reached with allow_pickle (checked above)
                shutil.copyfile(files[VEC_NORMALIZE_HUB], params / VEC_NORMALIZE_LOCAL)
                logger.warning("Copied %s as published: rl_zoo3 unpickles it (allowed by allow_pickle=True)", VEC_NORMALIZE_HUB)
        else:
            name = _zip_name(dl, algo, env_id)
            files[name] = dl.get(name)
            shutil.copyfile(files[name], zip_out)
            if VEC_NORMALIZE_HUB in files:
                shutil.copyfile(files[VEC_NORMALIZE_HUB], params / VEC_NORMALIZE_LOCAL)
        for name in (CONFIG_YML, ARGS_YML, ENV_KWARGS_YML):
            if name in files:
                shutil.copyfile(files[name], params / name)
        if RESULTS_JSON in files:
            shutil.copyfile(files[RESULTS_JSON], tmp / RESULTS_JSON)
        if METRICS_ZIP in files:
            _extract_metrics(files[METRICS_ZIP], tmp)
        os.replace(tmp, target)  # the run folder appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    how = "pickle-free path (rebuilt from safetensors)" if path == "safetensors" else "pickle path (model zip copied as published)"
    (logger.info if path == "safetensors" else logger.warning)("Pulled %s@%s into %s via the %s", repo_id, dl.revision[:8], target, how)
    return LoadInfo(repo_id, dl.revision, path, algo, env_id, files, str(target))
