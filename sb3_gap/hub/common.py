"""What :mod:`sb3_gap.hub.push` and :mod:`sb3_gap.hub.pull` share: the RL Zoo's file names on the Hub,
repository-id and endpoint checks, and :class:`HubError`, into which every huggingface_hub / network
exception is translated (with any token scrubbed from the message).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_sb3 import EnvironmentName, ModelName

from sb3_gap.checks import Refused

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

#: Most bytes ``train_eval_metrics.zip`` may unpack to (rl_zoo3's evaluations.npz and monitor CSVs: a few MB).
MAX_METRICS_BYTES = 2**26
#: Most bytes a model zip pulled with ``allow_pickle`` may unpack to (SB3 reads every member into memory on load).
MAX_MODEL_ZIP_BYTES = 2**31
#: Largest ``results.json`` or ``README.md`` downloaded (a few kB).
MAX_TEXT_BYTES = 2**20
#: Largest ``vec_normalize.pkl`` downloaded (running means and variances of the observations: ~0.5 MB for 4x84x84).
MAX_VEC_NORMALIZE_BYTES = 2**26
#: Largest unpacked / packed ratio of an archive above 1 MiB unpacked (SB3 stores its members uncompressed, ratio ~1;
#: a zip bomb reaches ~1000).
MAX_ARCHIVE_RATIO = 100

#: Deepest nesting of mappings and lists a JSON or YAML file read here may have (``sb3_gap.json`` and the Zoo's files
#: nest a few levels): deeper data would exhaust Python's recursion in the parsers and in every check that walks it.
MAX_NESTING = 64

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


class HubError(Refused):
    """A Hub operation failed; the message says what went wrong and how to fix it. No token is ever in it."""


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def _scrub(text: str, token: str | None) -> str:
    """``text`` with ``token``, and anything that looks like a Hugging Face token, replaced by ``***``."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str, endpoint: str, token: str | None) -> Iterator[None]:
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
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # the local disk, not the network
            msg = (
                f"No space left on the local disk while {action} ({e.filename or huggingface_hub.constants.HF_HUB_CACHE}): "
                "free some space, or set HF_HUB_CACHE to a folder on another disk, and re-run the same command"
            )
        else:
            msg = (
                f"Cannot complete {action}: the connection to {endpoint} failed or was interrupted ({type(e).__name__}). "
                "Check your network (and HF_ENDPOINT); nothing local was modified. A Hub commit is all-or-nothing, "
                "so an interrupted push left the repository as it was: re-run the same command."
            )
    if msg is not None:
        raise HubError(_scrub(msg, token))


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_text(path: str | os.PathLike[str]) -> str:
    """
    The UTF-8 text of a file (a download's ``sb3_gap.json`` or Zoo YAML).

    :raises ValueError: Naming the file and the first byte that is not UTF-8
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused(
            f"{Path(path).name} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): a corrupt download or another kind of file"
        ) from None


def nesting_error(name: str) -> Refused:
    """The error for a file nested deeper than :data:`MAX_NESTING` (or than the parser's recursion allows)."""
    return Refused(f"{name} holds data nested deeper than {MAX_NESTING} levels (sb3_gap.hub.common.MAX_NESTING): refused")


def check_nesting(value: Any, name: str) -> None:
    """
    Refuse ``value`` (parsed JSON or YAML) if its mappings and lists nest deeper than :data:`MAX_NESTING`; walked
    without recursion.

    :param value: The parsed data
    :param name: The file it came from, for the message
    :raises ValueError: Naming the file and the limit
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > MAX_NESTING:
            raise nesting_error(name)
        stack.extend((child, depth + 1) for child in children)


def check_repo_id(repo_id: str) -> None:
    """Refuse a ``repo_id`` that is not ``<user or org>/<name>`` before any request is made."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise Refused(f"repo_id must look like '<user or org>/<name>' (letters, digits, '-', '_', '.'), got {repo_id!r}")


def resolve_endpoint(endpoint: str | None) -> str:
    """``endpoint``, else ``HF_ENDPOINT`` (read now, not at import), else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT).rstrip("/")


def model_file_name(algo: str, env_id: str) -> str:
    """``{algo}-{env}.zip`` as rl_zoo3 / huggingface_sb3 name it (``/`` in the env id becomes ``-``)."""
    return ModelName(algo, EnvironmentName(env_id)).filename


def check_archive(path: str | os.PathLike[str], name: str, max_bytes: int, verify: bool = False) -> list[zipfile.ZipInfo]:
    """
    Check a downloaded zip archive from its central directory before anything is unpacked: it must open (a truncated
    or corrupt download does not), unpack to at most ``max_bytes`` and at most :data:`MAX_ARCHIVE_RATIO` times its
    size. ``zipfile`` never unpacks more than a member's recorded size, so these bounds hold while unpacking.

    :param path: The archive
    :param name: Its name, for the messages
    :param max_bytes: Most bytes the members may unpack to, together
    :param verify: Also read every member through (CRC-32 checks), for an archive that is copied as it is
    :return: The members
    :raises ValueError: Naming the archive and the size, ratio or damage at fault
    """
    packed = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise Refused(f"{name} unpacks to {total:,} bytes, more than the {max_bytes:,} allowed; refused before unpacking")
            if total > 2**20 and total > MAX_ARCHIVE_RATIO * max(packed, 1):
                raise Refused(
                    f"{name} unpacks {packed:,} bytes to {total:,} (x{total / max(packed, 1):,.0f}), more than x{MAX_ARCHIVE_RATIO} "
                    "(sb3_gap.hub.common.MAX_ARCHIVE_RATIO): a zip bomb; refused before unpacking"
                )
            if verify:
                for member in members:
                    with archive.open(member) as f:
                        while f.read(2**20):
                            pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
        raise Refused(f"{name} is not a valid zip archive ({_first_line(e)}): corrupt or truncated download") from None
    return members
