"""
Files written whole or not at all: through a temp file next to the target and ``os.replace``, so that readers see the
old file or the new one, never half of one; when the write fails (a full disk), the temp file is removed and the error
names the file that could not be written.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from pathlib import Path
from typing import Any

from sb3_gap.checks import CannotWrite

#: ``errno`` of the failures with which the system refuses a write (disk full, quota, read-only, permission).
FILE_SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


def write_error(path: str | os.PathLike[str], error: OSError) -> OSError:
    """
    ``error`` as an ``OSError`` of the same kind that names ``path``: ``[Errno 28] No space left on device: '<path>'``
    (a failed ``write`` or ``fsync`` names no file). The system's refusals (:data:`FILE_SYSTEM_ERRNOS`) become
    :class:`~sb3_gap.checks.CannotWrite`, which the command lines print in one line; any other error keeps its kind.

    :param path: The file (or folder) that could not be written
    :param error: The error raised while writing it
    """
    if error.errno is None:
        return OSError(f"{error}: {os.fspath(path)!r}" if str(error) else f"cannot write {os.fspath(path)!r}")
    kind = CannotWrite if error.errno in FILE_SYSTEM_ERRNOS else OSError
    return kind(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (the step a full disk fails)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """
    Write ``data`` to ``path`` through a temp file ``.<name>.tmp-<pid>`` and ``os.replace``: readers see the old or the
    new file, never half. On failure the temp file is removed and the previous file, if any, is left as it was.

    :param path: The file to write (its folder is created)
    :param data: The bytes
    :raises OSError: Naming ``path`` (e.g. ``[Errno 28] No space left on device: '<path>'``)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def atomic_save_figure(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> None:
    """
    Render a matplotlib figure in memory and write it with :func:`atomic_write_bytes` (format from the suffix).

    :param fig: The figure
    :param path: Where to write it (``.png``, ``.pdf``...)
    :param savefig_kwargs: Passed to ``fig.savefig`` (``dpi``, ``bbox_inches``...)
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    atomic_write_bytes(path, buffer.getvalue())
