"""
The sweep's database: storage URLs (checked before use, their passwords masked in every message),
Optuna's ``RDBStorage`` opened with a clear error for a missing driver and retried when workers race
to create its tables, and probes of SQLite files (corrupt, truncated or locked) that turn hangs and
tracebacks into one-line errors. Study-level storage (the study, its grid, best trials) is in
:mod:`sb3_gap.sweep.storage`.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.storages import RDBStorage

from sb3_gap.checks import MissingPackage, Refused

STORAGE_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
STORAGE_EXAMPLES = "sqlite:///runs/sweep.db, postgresql://user:password@host/db, mysql+pymysql://user:password@host/db"


# The driver each backend needs, for the error when it is missing. SQLAlchemy >= 2.1 opens postgresql:// with
# psycopg 3; psycopg2 needs postgresql+psycopg2:// (checked against PostgreSQL 15, docs/sweeps.md).
DB_DRIVERS = {
    "postgresql": 'pip install "psycopg[binary]" (for postgresql://; with psycopg2-binary write postgresql+psycopg2://)',
    "mysql": "pip install pymysql, and write mysql+pymysql://",
    "mariadb": "pip install pymysql, and write mariadb+pymysql://",
}


# Query-string keys whose values are secrets (``?password=...``, ``&sslpassword=...``, tokens, keys).
_SECRET_QUERY = re.compile(r"(?i)([?&;][^=&;#?]*(?:pass|pwd|secret|token|key)[^=&;#?]*=)[^&;#]*")
# scheme://user:<anything, '@' and '/' included>@<rest without '@'>: the password is everything up to the LAST '@'.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:/*[^:/?#@]*):(.*)@([^@]*)$", re.S)


def _mask_userinfo(text: str) -> str:
    """``text`` with any ``user:password@`` part masked, whether or not SQLAlchemy can parse it."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(text)
        rendered = parsed.render_as_string(hide_password=True)
        password = None if parsed.password is None else str(parsed.password)
        # SQLAlchemy stops the password at the first '@' ("u:p@ss@host" has host "ss@host"): fall through then.
        if "@" not in (parsed.host or "") and not (password and password in rendered):
            return rendered
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: masked by the rules below
        pass
    match = _USERINFO.match(text)
    if match:
        return f"{match.group(1)}:***@{match.group(3)}"
    if "@" in text:  # no "user:" part that the pattern recognizes: hide all that precedes the last '@'
        scheme, sep, rest = text.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if sep else "***@" + text.rsplit("@", 1)[1]
    return text


def display_url(url: str) -> str:
    """
    ``url`` with every form of password masked (``***``), for messages, logs and reports: the
    ``user:password@`` part (also when the password holds ``@`` or ``/``, or the URL does not parse)
    and query-string secrets (``?password=``, ``sslpassword``, tokens, keys).

    :param url: A storage URL, possibly malformed
    """
    return _SECRET_QUERY.sub(r"\1***", _mask_userinfo(str(url)))


def scrub_secrets(text: str, url: str | None) -> str:
    """``text`` (an error message) with ``url`` shown masked and its password, if any, replaced by ``***``."""
    if not url:
        return text
    text = text.replace(str(url), display_url(url))
    from sqlalchemy.engine import make_url

    secrets: list[str] = []
    try:
        parsed = make_url(url)
        secrets += [str(parsed.password)] if parsed.password else []
        secrets += [str(v) for k, v in parsed.query.items() if re.search(r"(?i)pass|pwd|secret|token|key", k) and isinstance(v, str)]
    except Exception:  # noqa: BLE001 - unparsable: the pattern below finds the password
        pass
    match = _USERINFO.match(str(url))  # also when SQLAlchemy stopped the password at an '@' inside it
    if match:
        # An unescaped '@' in the password: drivers take what follows it for the host and print it ("host 'secret@db-host'").
        pieces = match.group(2).split("@")
        secrets += [match.group(2)] + ["@".join(pieces[i:]) for i in range(1, len(pieces))]
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:  # shorter "secrets" would mask ordinary words and reveal little
            text = text.replace(secret, "***")
    return text


def is_lock_error(error: BaseException | None) -> bool:
    """Whether ``error``, or an exception it was raised from or while handling, is SQLite's "database is locked"."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if "database is locked" in str(error) or "database table is locked" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def locked_message(url: str, during: str) -> str:
    """One line saying that the storage ``url`` was locked ``during`` what, by whom (for SQLite files), and what happens next."""
    path = sqlite_file(url)
    holders = f" by {_lock_holders(path)}" if path is not None and path.exists() else ""
    return f"SQLite storage {path if path is not None else display_url(url)} is locked{holders} {during}"


def storage_refusal(url: str, error: Exception) -> Refused:
    """
    The one-line refusal for a storage that cannot be opened: its driver is missing or unknown (``ImportError``,
    SQLAlchemy's ``NoSuchModuleError``), or the database refused the connection (a ``DBAPIError``: wrong password, no
    server). The URL's password is masked; the driver's error stays the refusal's cause, in the traceback chain.

    :param url: The storage URL
    :param error: What opening it raised
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, (ImportError, NoSuchModuleError)):
        backend = make_url(url).get_backend_name()
        hint = DB_DRIVERS.get(backend, f"install the SQLAlchemy driver for {backend!r}")
        return MissingPackage(scrub_secrets(f"No database driver for the storage {display_url(url)}: {hint} ({first})", url))
    return Refused(scrub_secrets(f"Cannot open the storage {display_url(url)}: {first}", url))


def rdb_storage(url: str, attempts: int = 4, storage_class: type[RDBStorage] | None = None, **kwargs: Any) -> RDBStorage:
    """
    ``optuna.storages.RDBStorage(url, **kwargs)``, with a clear error when the database driver is missing,
    and retried when workers that start together on an empty database race to create Optuna's tables
    (seen with PostgreSQL: one worker fails on a duplicate ``alembic_version`` type; a retry finds the tables).

    :param url: SQLAlchemy database URL
    :param attempts: Tries before a database error is raised
    :param storage_class: A subclass of ``RDBStorage`` to build (the sweeps' :class:`~sb3_gap.sweep.storage.SweepStorage`;
        default ``RDBStorage``)
    :param kwargs: Passed to ``RDBStorage``
    :raises Refused: The storage cannot be opened after ``attempts`` tries, or its driver is missing (:func:`storage_refusal`)
    """
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    for attempt in range(attempts):
        try:
            return (storage_class or RDBStorage)(url, **kwargs)
        except DBAPIError as e:
            if attempt == attempts - 1:
                raise storage_refusal(url, e) from e
            time.sleep(0.5 * (attempt + 1) + random.random())
        except (ImportError, NoSuchModuleError) as e:
            raise storage_refusal(url, e) from None
    raise AssertionError("unreachable")


# What a password may not hold unescaped in a URL's ``user:password@`` part (RFC 3986 userinfo), and a '%' that does not
# start a percent-escape: parsers would cut the URL there and quote the rest (a host, a port) in their errors.
_RAW_IN_PASSWORD = re.compile(r"[@:/?#]|%(?![0-9A-Fa-f]{2})")


def check_storage_url(url: str) -> None:
    """
    Raise :class:`~sb3_gap.checks.Refused` unless ``url`` is an SQLAlchemy database URL Optuna's RDBStorage can open.
    A password holding a raw ``@ : / ? #`` or a bare ``%`` is refused without showing any part of it.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    match = _USERINFO.match(str(url))
    if match and _RAW_IN_PASSWORD.search(match.group(2)):
        raise Refused(
            "Bad storage URL: its password holds a raw '@', ':', '/', '?', '#' or a '%' that starts no %XX escape; "
            "percent-encode the password (urllib.parse.quote(password, safe='')). The URL is not shown, to keep the "
            f"password out of logs; valid forms: {STORAGE_EXAMPLES}"
        )
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError, TypeError) as e:
        raise Refused(scrub_secrets(f"Bad storage URL {display_url(url)!r} ({e}); valid forms: {STORAGE_EXAMPLES}", url)) from None
    if backend not in STORAGE_BACKENDS:
        raise Refused(f"Unsupported storage backend {backend!r} in {display_url(url)!r}; valid backends: {list(STORAGE_BACKENDS)}")


#: Seconds each statement of a sweep waits for another process's lock on its SQLite storage (SQLite's busy timeout).
SQLITE_BUSY_TIMEOUT_S = 120.0
#: Seconds one probe of an SQLite storage waits for a lock before saying so (then it retries, visibly).
SQLITE_PROBE_TIMEOUT_S = 3.0
#: Seconds a locked SQLite storage is retried before the command stops with an error.
SQLITE_LOCK_WAIT_S = 60.0


def sqlite_file(url: str) -> Path | None:
    """The file of an ``sqlite:///`` storage URL (``None`` for other backends and in-memory databases)."""
    if not str(url).startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _lock_holders(path: Path) -> str:
    """Which processes have ``path`` (or its journal) open, from ``/proc`` (Linux; same user), for the lock message."""
    targets = {str(path.resolve()), str(path.resolve()) + "-journal", str(path.resolve()) + "-wal"}
    holders = []
    proc = Path("/proc")
    for pid_dir in proc.iterdir() if proc.is_dir() else []:
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (pid_dir / "fd").iterdir()):
                cmd = " ".join((pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split())
                holders.append(f"PID {pid_dir.name} ({cmd[:80]})")
        except OSError:  # gone, or another user's process
            continue
    return ", ".join(holders) if holders else "another process (none visible from here: another user, or another machine)"


def _sqlite_header_problem(path: Path) -> str | None:
    """Why ``path`` is not an intact SQLite file (bad header, truncated), or ``None``; an empty file is a new database."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header:
        return None
    if not header.startswith(b"SQLite format 3\x00"):
        return "it is not an SQLite database (wrong header: corrupt, or another kind of file)"
    if len(header) < 100:
        return f"it is truncated ({len(header)} bytes, shorter than the 100-byte SQLite header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # the in-header size is valid when these counters agree
    if header_valid and pages and path.stat().st_size < pages * page_size:
        return f"it is truncated ({path.stat().st_size} bytes; its header says {pages} pages of {page_size} bytes)"
    return None


def check_sqlite_storage(url: str, must_exist: bool = False, write: bool = True, wait: float | None = None) -> None:
    """
    Check an ``sqlite:///`` storage before Optuna opens it, so that problems are one-line errors instead of
    hangs or tracebacks: a missing file (when ``must_exist``), a corrupt or truncated file, and a lock held by
    another process, which is reported within :data:`SQLITE_PROBE_TIMEOUT_S` seconds with the processes
    holding the file, retried visibly on stderr and given up after ``wait`` seconds. Other URLs are not touched.

    :param url: Storage URL
    :param must_exist: Refuse a file that does not exist (reports: never create an empty database)
    :param write: Probe for a write lock (sweeps) rather than a read (reports)
    :param wait: Seconds to retry a locked file (default :data:`SQLITE_LOCK_WAIT_S`)
    :raises ValueError: Naming the file and what is wrong with it
    """
    import sqlite3

    path = sqlite_file(url)
    if path is None:
        return
    if not path.exists():
        if must_exist:
            raise Refused(f"SQLite storage {path} does not exist (from {display_url(url)}): check the path; a sweep creates it")
        return
    if path.is_dir():
        raise Refused(f"SQLite storage {path} is a folder, not a database file: check --storage ({display_url(url)})")
    problem = _sqlite_header_problem(path)
    if problem:
        raise Refused(f"SQLite storage {path} cannot be used: {problem}; restore it from a copy or use another --storage")
    wait = SQLITE_LOCK_WAIT_S if wait is None else wait
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        try:
            conn = sqlite3.connect(str(path), timeout=SQLITE_PROBE_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("ROLLBACK")
            finally:
                conn.close()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise Refused(f"SQLite storage {path} cannot be opened: {e}") from None
            holders = _lock_holders(path)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Refused(
                    f"SQLite storage {path} is locked by {holders}; gave up after {wait:.0f} s: "
                    "let that process finish or stop it, or use another --storage"
                ) from None
            attempt += 1
            print(f"sb3-gap: SQLite storage {path} is locked by {holders}; retry {attempt} (giving up in {left:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(min(1.0, max(left, 0.0)))
        except sqlite3.DatabaseError as e:
            raise Refused(f"SQLite storage {path} is corrupt ({e}); restore it from a copy or use another --storage") from None


#: Tables every Optuna RDB storage has (``optuna.storages._rdb.models``): a database without them holds no study.
OPTUNA_TABLES = ("studies", "trials", "version_info")


def check_holds_optuna_studies(url: str) -> None:
    """
    Refuse a database that holds no Optuna storage, only reading its table names: ``RDBStorage`` would create
    Optuna's tables in it (13 of them, in someone else's database). For reports, which only read.

    :param url: Storage URL (an existing SQLite file: :func:`check_sqlite_storage` first)
    :raises ValueError: Naming the database and the tables it has instead
    """
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    try:
        engine = create_engine(url)
    except (ImportError, NoSuchModuleError) as e:
        raise storage_refusal(url, e) from None
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
    except DBAPIError as e:
        raise storage_refusal(url, e) from e
    finally:
        engine.dispose()
    missing = [t for t in OPTUNA_TABLES if t not in tables]
    if missing:
        shown = tables[:10] + (["..."] if len(tables) > 10 else [])
        raise Refused(
            f"{display_url(url)} holds no Optuna study (no tables {missing}; its tables: {shown}): it is not a database written by "
            "`sb3-gap sweep`; check --storage (nothing was written to it)"
        )


def is_refusal(error: BaseException) -> bool:
    """
    Whether a sweep or report prints ``error`` in one line: sb3_gap's refusal (:class:`~sb3_gap.checks.Refused`) or
    SQLite's "database is locked" raised inside Optuna (another process holds the file; :func:`locked_message` says who).
    Anything else is a bug or an unexpected failure and keeps its traceback.
    """
    return isinstance(error, Refused) or is_lock_error(error)


def cli_message(command: str, error: BaseException, storage: str | Sequence[str] | None = None) -> str:
    """``sb3-gap <command>: error: <first line>``, with the secrets of the storage URL(s) masked."""
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    if type(error).__module__.startswith("sqlalchemy") and not first.startswith("("):
        first = f"({type(error).__name__}) {first}"
    for url in [storage] if isinstance(storage, str) else list(storage or []):
        first = scrub_secrets(first, url)
    return f"sb3-gap {command}: error: {first}"
