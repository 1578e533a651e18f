"""``load_from_hub`` / ``pull_from_hub``: get an agent back from the Hugging Face Hub without unpickling.

Pickle-free by default: the model is rebuilt from ``model.safetensors`` + ``sb3_gap.json``
(:func:`sb3_gap.hub.safe.build_from_config`), and the Zoo's YAML files are checked to hold plain data
only (:mod:`sb3_gap.hub.zoo_yaml`). A repository without pickle-free files (e.g. pushed by rl_zoo3) is
refused unless ``allow_pickle=True``. Pulls build a new Zoo run folder in a temporary directory and move
it into place in one ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_sb3 import EnvironmentName
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_gap.algos import ALGOS, get_algo
from sb3_gap.checks import Refused, check_env_id_form, check_int
from sb3_gap.files import write_error
from sb3_gap.hub import common, safe, zoo_yaml
from sb3_gap.hub.common import (
    ARGS_YML,
    CONFIG_YML,
    ENV_KWARGS_YML,
    METRICS_ZIP,
    README,
    RESULTS_JSON,
    VEC_NORMALIZE_HUB,
    VEC_NORMALIZE_LOCAL,
    HubError,
    check_archive,
    check_nesting,
    check_repo_id,
    hub_errors,
    logger,
    model_file_name,
    read_text,
    resolve_endpoint,
)
from sb3_gap.hub.zoo_yaml import check_env_kwargs, check_zoo_config, load_zoo_yaml, write_zoo_yaml

_ZOO_YAML_FILES = (CONFIG_YML, ARGS_YML, ENV_KWARGS_YML)


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


def max_download_bytes(name: str) -> int:
    """
    The most bytes a pull or load downloads for the file ``name`` of a repository: each file's own cap, the one its
    reader checks again on disk (:data:`sb3_gap.hub.safe.MAX_CONFIG_BYTES`, :data:`sb3_gap.hub.zoo_yaml.MAX_YAML_BYTES`,
    :data:`~sb3_gap.hub.common.MAX_METRICS_BYTES`, :data:`~sb3_gap.hub.common.MAX_MODEL_ZIP_BYTES`...).
    """
    if name == safe.CONFIG_FILE:
        return safe.MAX_CONFIG_BYTES
    if name == safe.WEIGHTS_FILE:
        return safe.MAX_WEIGHTS_BYTES
    if name in _ZOO_YAML_FILES:
        return zoo_yaml.MAX_YAML_BYTES
    if name == METRICS_ZIP:
        return common.MAX_METRICS_BYTES
    if name in (RESULTS_JSON, README):
        return common.MAX_TEXT_BYTES
    if name == VEC_NORMALIZE_HUB:
        return common.MAX_VEC_NORMALIZE_BYTES
    if name.endswith(".zip"):
        return common.MAX_MODEL_ZIP_BYTES
    raise Refused(f"{name!r} is not a file sb3_gap downloads")


class _Download:
    """
    The files of one commit of a repo, downloaded through huggingface_hub's cache on demand: each file's size, from
    the repository's file listing, is checked against :func:`max_download_bytes` before it is fetched, and again on
    disk after; :meth:`discard_on_refusal` removes from the cache what a refused pull or load downloaded.
    """

    def __init__(self, repo_id: str, revision: str | None, token: str | None, endpoint: str | None, cache_dir: str | Path | None) -> None:
        check_repo_id(repo_id)
        self.repo_id, self.token, self.cache_dir = repo_id, token, cache_dir
        self.endpoint = resolve_endpoint(endpoint)
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.downloaded: list[str] = []
        with self._errors("reading the repository"):
            info = self.api.model_info(repo_id, revision=revision)
            self.revision: str = info.sha or (revision or "main")
            self.files = {sibling.rfilename for sibling in info.siblings or []}
            # The sizes, from the listing of this very commit (huggingface_hub's RepoFile: an LFS file's size is its object's).
            self.sizes: dict[str, int] = {}
            for entry in self.api.list_repo_tree(repo_id, revision=self.revision):
                size = getattr(entry, "size", None)
                lfs = getattr(entry, "lfs", None)
                if lfs is not None and getattr(lfs, "size", None) is not None:
                    size = lfs.size
                if isinstance(size, int):
                    self.sizes[entry.path] = size

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return hub_errors(action, self.repo_id, self.endpoint, self.token)

    def get(self, name: str) -> str:
        """The local path of ``name``, downloaded unless cached, refused before the download if the Hub lists it larger
        than :func:`max_download_bytes` (or without a size), and removed again if the file on disk is larger."""
        cap = max_download_bytes(name)
        size = self.sizes.get(name)
        if size is None:
            raise HubError(f"{self.repo_id!r} lists no size for {name!r}: refused before downloading it")
        if size > cap:
            raise HubError(f"{self.repo_id!r}: {name} has {size:,} bytes, more than the {cap:,} it may have; refused before downloading it")
        with self._errors(f"downloading {name!r}"):
            path = str(self.api.hf_hub_download(self.repo_id, name, revision=self.revision, cache_dir=self.cache_dir))
        self.downloaded.append(path)
        on_disk = os.path.getsize(path)
        if on_disk > cap:  # the listing understated it
            self.discard()
            raise HubError(f"{self.repo_id!r}: {name} has {on_disk:,} bytes, more than the {cap:,} it may have; refused and removed")
        return path

    def discard(self) -> None:
        """Remove the files downloaded so far from huggingface_hub's cache (the blob and the snapshot's link to it)."""
        for path in self.downloaded:
            blob = os.path.realpath(path)
            for item in {path, blob}:
                with contextlib.suppress(OSError):
                    os.remove(item)
        self.downloaded.clear()

    @contextlib.contextmanager
    def discard_on_refusal(self) -> Iterator[None]:
        """Remove what was downloaded when a check refuses it: nothing refused stays in the cache."""
        try:
            yield
        except Refused:
            self.discard()
            raise


def _safe_info(dl: _Download) -> dict[str, Any] | None:
    if safe.CONFIG_FILE in dl.files and safe.WEIGHTS_FILE in dl.files:
        return safe.read_config(dl.get(safe.CONFIG_FILE))
    return None


def _check_downloaded_yaml(repo_id: str, files: dict[str, str]) -> dict[str, Any]:
    """
    Read the downloaded Zoo YAML files as plain data (:func:`load_zoo_yaml`) and refuse what the Zoo would
    execute or write from them (:func:`check_zoo_config`); path-like ``env_kwargs`` are refused too.

    :return: The checked content of each file, by name: what the pull writes (:func:`write_zoo_yaml`)
    :raises HubError: Naming the repository, the file and the value or key at fault
    """
    try:
        loaded = {name: load_zoo_yaml(files[name]) for name in _ZOO_YAML_FILES if name in files}
        hyperparams = loaded.get(CONFIG_YML) or {}
        check_zoo_config(hyperparams, CONFIG_YML)
        env_kwargs = [(CONFIG_YML, hyperparams.get("env_kwargs")), (ENV_KWARGS_YML, loaded.get(ENV_KWARGS_YML))]
        if isinstance(loaded.get(ARGS_YML), dict):
            env_kwargs.append((ARGS_YML, loaded[ARGS_YML].get("env_kwargs")))
        for name, kwargs in env_kwargs:
            check_env_kwargs(kwargs, name)
    except ValueError as e:
        raise HubError(f"{repo_id!r}: {e}") from None
    return loaded


def _rewrite_json(source: str, target: Path) -> None:
    """Write ``source``'s JSON (UTF-8, at most :data:`~sb3_gap.hub.common.MAX_NESTING` deep), parsed and serialized
    again: never the downloaded bytes."""
    name = Path(source).name
    try:
        data = json.loads(read_text(source))
    except json.JSONDecodeError as e:
        raise Refused(f"{name} is not JSON ({e.msg} at line {e.lineno} column {e.colno}): a corrupt download or another kind of file") from None
    except RecursionError:
        raise common.nesting_error(name) from None
    check_nesting(data, name)
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")


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
    if env_id is not None:
        check_env_id_form(env_id)
    dl = _Download(repo_id, revision, token, endpoint, cache_dir)
    with dl.discard_on_refusal():  # nothing refused stays in the cache
        config = _safe_info(dl)
        if config is not None:
            weights = dl.get(safe.WEIGHTS_FILE)
            model = safe.build_from_config(config, weights, device=device, **overrides)
            info = LoadInfo(repo_id, dl.revision, "safetensors", config["algo"], config.get("env_id"), {safe.WEIGHTS_FILE: weights})
            if VEC_NORMALIZE_HUB in dl.files:
                logger.warning(
                    "%s was trained with VecNormalize: its statistics (%s) are published only pickled and were NOT loaded; "
                    "wrap your env in VecNormalize with the right statistics, or pull with --allow-pickle if you trust the author",
                    repo_id,
                    VEC_NORMALIZE_HUB,
                )
            logger.info(
                "Loaded %s from %s@%s via the pickle-free path (safetensors + %s)", type(model).__name__, repo_id, dl.revision[:8], safe.CONFIG_FILE
            )
        else:
            if not allow_pickle:
                raise _refuse_pickle(repo_id)
            if algo is None:
                raise Refused(f"algo is required to load a zip-only repository; valid choices: {sorted(ALGOS)}")
            cls = get_algo(algo)
            name = _zip_name(dl, algo.lower(), env_id)
            path = dl.get(name)
            check_archive(path, name, common.MAX_MODEL_ZIP_BYTES)
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
    """Unpack ``train_eval_metrics.zip``: only flat ``.npz`` / ``.csv`` members (no paths out of ``out``), at most
    :data:`~sb3_gap.hub.common.MAX_METRICS_BYTES` in all (:func:`~sb3_gap.hub.common.check_archive`)."""
    members = check_archive(archive, METRICS_ZIP, common.MAX_METRICS_BYTES)
    with zipfile.ZipFile(archive) as z:
        for member in members:
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
    check_int("exp_id (--exp-id)", exp_id, 0, example="0 for the next free run id, 1, 2")
    if env_id is not None:
        check_env_id_form(env_id)  # it names the run folder: never a path
    dl = _Download(repo_id, revision, token, endpoint, cache_dir)
    with dl.discard_on_refusal():  # nothing refused stays in the cache
        path, algo, env_id, target, files = _pull(dl, Path(folder), algo, env_id, exp_id, allow_pickle)
    how = "pickle-free path (rebuilt from safetensors)" if path == "safetensors" else "pickle path (model zip copied as published)"
    (logger.info if path == "safetensors" else logger.warning)("Pulled %s@%s into %s via the %s", repo_id, dl.revision[:8], target, how)
    return LoadInfo(repo_id, dl.revision, path, algo, env_id, files, str(target))


def _pull(
    dl: _Download, folder: Path, algo: str | None, env_id: str | None, exp_id: int, allow_pickle: bool
) -> tuple[str, str, str, Path, dict[str, str]]:
    """:func:`pull_from_hub` once the repository is found: (path taken, algo, env id, run folder, downloaded files)."""
    config = _safe_info(dl)
    algo, env_id = _algo_and_env(dl.repo_id, config, algo, env_id, allow_pickle)
    env_name = EnvironmentName(env_id)
    target = _next_run_folder(folder, algo, env_name, exp_id)
    # Pickle-free whenever the repository allows it; allow_pickle only permits the pickled model zip (and the
    # pickled VecNormalize statistics).
    path = "safetensors" if config is not None else "pickle"
    files, checked_yaml = _download_checked_files(dl, path, allow_pickle)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / algo).mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{env_name}-pull-", dir=folder / algo))
    try:
        params = tmp / env_name
        params.mkdir()
        if config is not None:
            _write_rebuilt_model(
                dl, config, files, tmp / f"{env_name}.zip", params, normalize=bool((checked_yaml.get(CONFIG_YML) or {}).get("normalize"))
            )
        else:
            _copy_published_model(dl, algo, env_id, files, tmp / f"{env_name}.zip", params)
        for name, data in checked_yaml.items():
            write_zoo_yaml(data, params / name)
        if RESULTS_JSON in files:
            _rewrite_json(files[RESULTS_JSON], tmp / RESULTS_JSON)
        if METRICS_ZIP in files:
            _extract_metrics(files[METRICS_ZIP], tmp)
        os.replace(tmp, target)  # the run folder appears complete or not at all
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.filename is None:  # a full disk: name the run folder that could not be written
            raise write_error(target, e) from None
        raise
    return path, algo, env_id, target, files


def _algo_and_env(repo_id: str, config: dict[str, Any] | None, algo: str | None, env_id: str | None, allow_pickle: bool) -> tuple[str, str]:
    """
    The algorithm (lower case, a known one) and env id to pull: those of the repository's ``sb3_gap.json``, which the
    given ones must match, or the given ones for a repository without it (refused unless ``allow_pickle``).

    :raises ValueError: A given one differs from the repository's, one is missing, or the env id is a path
    """
    if config is not None:
        if config.get("env_id") is not None:
            check_env_id_form(config["env_id"], safe.CONFIG_FILE)  # a download never chooses where the pull writes
        for given, stored, what in ((algo, config["algo"], "algo"), (env_id, config.get("env_id"), "env")):
            if given is not None and stored is not None and given.lower() != str(stored).lower():
                raise Refused(f"--{what} {given!r} does not match the repository's {what} {stored!r}")
        algo, env_id = config["algo"], env_id or config.get("env_id")
    elif not allow_pickle:
        raise _refuse_pickle(repo_id)
    if algo is None or env_id is None:
        raise Refused("algo and env_id are required for a repository without sb3_gap.json (--algo, --env)")
    get_algo(algo.lower())
    return algo.lower(), env_id


def _download_checked_files(dl: _Download, path: str, allow_pickle: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """
    Download the Zoo's YAML files, results, card, metrics and VecNormalize statistics, checking them before anything
    is staged: the YAML files on every path, first (what the Zoo's enjoy would evaluate or import from them must pass
    the same allow-list whatever the flag, and it reads what is checked here, written again by ``write_zoo_yaml``,
    never the downloaded bytes, which ``yaml.UnsafeLoader`` may read otherwise), the metrics archive's size, and
    pickled VecNormalize statistics (needed by ``normalize``) only with ``allow_pickle``.

    :return: ``{name: local path}`` of the downloaded files, and ``{name: checked data}`` of the YAML files
    """
    repo_id = dl.repo_id
    files = {name: dl.get(name) for name in _ZOO_YAML_FILES if name in dl.files}
    checked_yaml = _check_downloaded_yaml(repo_id, files)
    hyperparams = checked_yaml.get(CONFIG_YML) or {}
    files.update({name: dl.get(name) for name in (RESULTS_JSON, README, METRICS_ZIP, VEC_NORMALIZE_HUB) if name in dl.files})
    if METRICS_ZIP in files:
        check_archive(files[METRICS_ZIP], METRICS_ZIP, common.MAX_METRICS_BYTES)  # before anything is staged
    if path == "safetensors" and hyperparams.get("normalize"):
        if not allow_pickle:
            raise HubError(
                f"{repo_id!r} needs VecNormalize statistics, which are only published pickled ({VEC_NORMALIZE_HUB}): "
                "pass --allow-pickle if you trust the repository's author."
            )
        if VEC_NORMALIZE_HUB not in files:
            raise HubError(f"{repo_id!r} says normalize: {hyperparams['normalize']!r} but publishes no {VEC_NORMALIZE_HUB}")
    return files, checked_yaml


def _write_rebuilt_model(dl: _Download, config: dict[str, Any], files: dict[str, str], zip_out: Path, params: Path, normalize: bool) -> None:
    """
    The pickle-free path: download the weights and write the zip the Zoo will unpickle here, by this code, from plain
    data (the model rebuilt from ``sb3_gap.json`` + ``model.safetensors``); copy the VecNormalize statistics when
    ``normalize`` (reached only with ``allow_pickle``, checked by :func:`_download_checked_files`).
    """
    weights = dl.get(safe.WEIGHTS_FILE)
    files[safe.WEIGHTS_FILE] = weights
    rebuilt = safe.build_from_config(config, weights, device="cpu")
    if isinstance(rebuilt, OffPolicyAlgorithm) and "buffer_size" in config["model_attrs"]:
        rebuilt.buffer_size = config["model_attrs"]["buffer_size"]  # the trained value, not the inference one
    rebuilt.save(zip_out)
    if normalize:
        shutil.copyfile(files[VEC_NORMALIZE_HUB], params / VEC_NORMALIZE_LOCAL)
        logger.warning("Copied %s as published: rl_zoo3 unpickles it (allowed by allow_pickle=True)", VEC_NORMALIZE_HUB)


def _copy_published_model(dl: _Download, algo: str, env_id: str, files: dict[str, str], zip_out: Path, params: Path) -> None:
    """The pickle path: download the model zip, check that it is whole, and copy it and the VecNormalize statistics as published."""
    name = _zip_name(dl, algo, env_id)
    files[name] = dl.get(name)
    check_archive(files[name], name, common.MAX_MODEL_ZIP_BYTES, verify=True)
    shutil.copyfile(files[name], zip_out)
    if VEC_NORMALIZE_HUB in files:
        shutil.copyfile(files[VEC_NORMALIZE_HUB], params / VEC_NORMALIZE_LOCAL)
