"""A throw-away local PostgreSQL server for the tests of multi-machine sweeps (tests/test_postgres.py).

``PostgresServer`` runs ``initdb`` into a fresh temporary folder, starts ``postgres`` on a free
127.0.0.1 port (its unix socket in that folder too, so nothing outside it is touched), with
password authentication (scram-sha-256) for every connection, an admin role and a role
``sweeper`` for the sweeps, and on :meth:`PostgresServer.stop` shuts the server down and deletes the folder.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, the
newest version there), or from ``$SB3_GAP_PG_BINDIR`` or ``PATH``. PostgreSQL refuses to run as root, so a root process
(CI) runs the server as the ``postgres`` system user the package creates, owning the folder.

Stopping "whatever happens": :meth:`stop` is idempotent and registered with ``atexit``, and the
server gets ``SIGQUIT`` (immediate shutdown) from the kernel if the process that started it dies
without running either (``PR_SET_PDEATHSIG``, Linux); the folder of a server whose test process was killed is deleted
by the next start (its ``owner.pid`` is gone).

By hand: ``python tests/postgres_server.py`` starts the same server, prints the storage URL and
the admin connection, and stops it (deleting its folder) on Ctrl-C.

Written by hand rather than with pytest-postgresql or testing.postgresql: those wrap ``pg_ctl``
(a daemon that outlives a killed test process) and do not drop root privileges.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ADMIN = "sb3gap_admin"
USER = "sweeper"
SERVER_USER = "postgres"  # the system user Debian's postgresql package creates; used when we are root
START_TIMEOUT_S = 60.0
PREFIX = "sb3gap-pg-"  # temporary folders: <tmp>/sb3gap-pg-XXXX/{owner.pid,data,sock,server.log}


class ServerError(RuntimeError):
    """The server could not start (the message is one line naming why)."""


def find_bindir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``$SB3_GAP_PG_BINDIR``, else Debian's newest ``/usr/lib/postgresql/<v>/bin``, else ``PATH``."""
    if os.environ.get("SB3_GAP_PG_BINDIR"):
        bindir = Path(os.environ["SB3_GAP_PG_BINDIR"])
        if not (bindir / "initdb").is_file():
            raise ServerError(f"SB3_GAP_PG_BINDIR={bindir}: no initdb there")
        return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServerError("no PostgreSQL server binaries (initdb): apt-get install postgresql (make install does it as root)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remove_orphans() -> None:
    """Delete the folders of earlier servers whose test process was killed (SIGKILL leaves no time to clean up)."""
    for folder in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            os.kill(int((folder / "owner.pid").read_text()), 0)
            continue  # its owner is alive
        except PermissionError:
            continue  # alive, another user's
        except ProcessLookupError:
            pass
        except (OSError, ValueError):  # no owner.pid (yet): only folders older than a minute
            if time.time() - folder.stat().st_mtime < 60:
                continue
        shutil.rmtree(folder, ignore_errors=True)


def _die_with_parent() -> None:
    """In the server's process (after it became the server user): SIGQUIT (immediate shutdown) when our parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG = 1
    except OSError:  # not glibc Linux: atexit and stop() still apply
        pass


class PostgresServer:
    """
    A PostgreSQL server in a temporary folder on 127.0.0.1 (see the module docstring).

    :param password: The ``sweeper`` role's password (random by default)
    """

    def __init__(self, password: str | None = None) -> None:
        self.password = password or "Sb3gapPw" + secrets.token_hex(8)
        self.admin_password = secrets.token_hex(16)
        self.port = 0
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------------------------------- start
    def _run_as(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a command as the unprivileged server user when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ServerError(
                f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as (apt-get install postgresql creates it)"
            ) from None
        return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    def start(self) -> PostgresServer:
        """initdb, start, create the ``sweeper`` role; on any failure everything is cleaned up and :class:`ServerError` raised."""
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException as e:
            self.stop()
            if isinstance(e, ServerError):
                raise
            if isinstance(e, Exception):
                raise ServerError(f"{type(e).__name__}: {' '.join(str(e).split())}") from e
            raise
        return self

    def _start(self) -> None:
        bindir = find_bindir()
        run_as = self._run_as()
        remove_orphans()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        data, sock, pwfile = self.root / "data", self.root / "sock", self.root / "pwfile"
        sock.mkdir()
        pwfile.write_text(self.admin_password + "\n")
        if run_as:
            for path in (self.root, sock, pwfile):
                shutil.chown(path, SERVER_USER, SERVER_USER)
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", ADMIN, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, cwd=self.root, **run_as,
        )  # fmt: skip
        pwfile.unlink()
        if init.returncode != 0:
            last = (init.stderr.strip().splitlines() or ["no output"])[-1]
            raise ServerError(f"initdb failed ({init.returncode}): {last}")
        for attempt in range(3):  # a free port can be taken between free_port() and bind(): try another
            self.port = free_port()
            self._log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed in stop()
            options = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": str(sock),
                "fsync": "off",  # a throw-away database: speed over durability
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
            }
            args = [str(bindir / "postgres"), "-D", str(data)] + [a for k, v in options.items() for a in ("-c", f"{k}={v}")]
            self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root, preexec_fn=_die_with_parent, **run_as)
            if self._wait_ready():
                break
            log = (self.root / "server.log").read_text(errors="replace")
            self._stop_process()
            if "could not bind" not in log and "already in use" not in log or attempt == 2:
                lines = [line for line in log.splitlines() if "FATAL" in line or "ERROR" in line] or log.splitlines()[-1:] or ["no output"]
                raise ServerError(f"postgres did not start: {lines[-1].strip()}")
        admin = self.connect()
        try:
            admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{self.password}'")
        finally:
            admin.close()

    def _wait_ready(self) -> bool:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(**self._admin_kwargs(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.2)
        return False

    # ------------------------------------------------------------------------------------------- use
    def _admin_kwargs(self, dbname: str = "postgres") -> dict[str, Any]:
        return dict(host="127.0.0.1", port=self.port, user=ADMIN, password=self.admin_password, dbname=dbname)

    def connect(self, dbname: str = "postgres") -> Any:
        """An autocommit admin connection (psycopg 3)."""
        import psycopg

        return psycopg.connect(**self._admin_kwargs(dbname), autocommit=True)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by ``sweeper``; returns its name."""
        name = name or "sweeps_" + secrets.token_hex(4)
        admin = self.connect()
        try:
            admin.execute(f"CREATE DATABASE {name} OWNER {USER}")
        finally:
            admin.close()
        return name

    def url(self, database: str, password: str | None = None, port: int | None = None, driver: str = "psycopg") -> str:
        """The SQLAlchemy storage URL of ``database`` as ``sweeper``."""
        password = self.password if password is None else password
        return f"postgresql+{driver}://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    # ------------------------------------------------------------------------------------------- stop
    def _stop_process(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 20), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):  # fast, immediate, kill
                proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the server and delete its folder (idempotent; also run at exit)."""
        self._stop_process()
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    server = PostgresServer().start()
    db = server.create_database("sweeps")
    print(f"storage URL: {server.url(db)}")
    print(f"admin:       psql 'postgresql://{ADMIN}:{server.admin_password}@127.0.0.1:{server.port}/postgres'")
    print(f"data folder: {server.root} (deleted on exit); Ctrl-C stops the server")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
