"""The session-wide guard of tests/conftest.py: tests look up loopback names only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

INNER = """
import socket


def test_caught_lookup_of_a_made_up_host():
    try:
        socket.getaddrinfo("db-host", 5432)
    except OSError:
        pass  # code under test that swallows the error does not hide the lookup


def test_lookup_of_a_public_address():
    socket.gethostbyname("8.8.8.8")


def test_loopback_lookups():
    for host in ("127.0.0.1", "localhost", "::1", None):
        socket.getaddrinfo(host, 80)
    socket.gethostbyname("127.0.0.1")
"""


def test_a_lookup_off_the_machine_fails_the_test_even_when_caught(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    out = proc.stdout
    # the guard fails a test at its teardown (pytest reports ERROR) when the test itself did not fail on the lookup
    assert "ERROR test_inner.py::test_caught_lookup_of_a_made_up_host" in out, out
    assert "FAILED test_inner.py::test_lookup_of_a_public_address" in out, out
    assert "PASSED test_inner.py::test_loopback_lookups" in out and proc.returncode == 1, out
    assert "tests talk to loopback only" in out
