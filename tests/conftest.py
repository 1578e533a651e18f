import ipaddress
import os
import socket

import pytest
import torch as th

# One torch thread per test process: `make test` runs one pytest-xdist worker per core (`-n auto`), and more
# torch threads than free cores slows everything badly. Subprocesses started by tests inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
th.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    th.manual_seed(0)


# --- tests talk to loopback only -----------------------------------------------------------------------------------
# Every Python-level name lookup of the whole session goes through this guard: a loopback name or address resolves,
# anything else is refused and fails the test that asked, even if the code under test caught the OSError. Lookups
# made in C below Python (libpq resolving a PostgreSQL host) are not seen: tests use 127.0.0.1 literals there.
_real_getaddrinfo, _real_gethostbyname, _real_gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex
_off_machine_lookups: list[str] = []


def _is_loopback(host) -> bool:
    if host in (None, "", b""):  # binding to a wildcard address, not a lookup
        return True
    name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def lookup(host, *args, **kwargs):
        if not _is_loopback(host):
            _off_machine_lookups.append(repr(host))
            raise OSError(f"a test looked up {host!r}: tests talk to loopback only (127.0.0.1)")
        return real(host, *args, **kwargs)

    return lookup


socket.getaddrinfo = _guarded(_real_getaddrinfo)
socket.gethostbyname = _guarded(_real_gethostbyname)
socket.gethostbyname_ex = _guarded(_real_gethostbyname_ex)


@pytest.fixture(autouse=True)
def _loopback_only():
    """Fail a test that looked up a name off the machine (see the guard above)."""
    before = len(_off_machine_lookups)
    yield
    if len(_off_machine_lookups) > before:
        pytest.fail(f"looked up names off the machine: {_off_machine_lookups[before:]}; tests talk to loopback only (127.0.0.1)")


# --- the loopback fake Hugging Face Hub (tests/fake_hub.py), shared by the test_hub*.py modules and test_checks.py ---


@pytest.fixture(scope="module")
def hub():
    """One fake Hub per test module, on 127.0.0.1, accepting ``fake_hub.TEST_TOKEN``."""
    from fake_hub import TEST_TOKEN, FakeHub  # tests/ is on sys.path (pytest's rootdir-relative import)

    with FakeHub(TEST_TOKEN) as fake:
        yield fake


@pytest.fixture
def hub_env(hub, monkeypatch, tmp_path):
    """Point huggingface_hub (and so the ``sb3-gap`` CLIs) at the fake Hub; only loopback names resolve."""
    import huggingface_hub
    from fake_hub import TEST_TOKEN, loopback_only

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)  # no request can leave the machine
    # The CLI reads the endpoint and token the way huggingface_hub does (HF_ENDPOINT / HF_TOKEN).
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return hub


@pytest.fixture(scope="module")
def dqn_files(tmp_path_factory):
    """An untrained DQN and its pickle-free files as sb3_gap pushes them (``helpers.safe_files``), built once per module."""
    from helpers import safe_files, tiny_dqn

    model = tiny_dqn()
    return model, safe_files(model, tmp_path_factory.mktemp("safe"))


# --- environments and allocations ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_registry():
    """The registry of a fresh process: gymnasium 1.x registers ALE ids only when ale_py is imported."""
    import gymnasium as gym

    saved = dict(gym.registry)
    for key in [k for k, s in gym.registry.items() if str(s.entry_point).startswith("ale_py")]:
        del gym.registry[key]
    try:
        yield
    finally:
        gym.registry.clear()
        gym.registry.update(saved)


@pytest.fixture
def no_big_layers(monkeypatch):
    """Fail the test if a real (not meta-device) linear or conv layer with more than 10**7 weights is built."""
    for cls in (th.nn.Linear, th.nn.Conv2d):
        original = cls.__init__

        def guarded(self, a, b, *args, __original=original, **kwargs):
            if not th.empty(0).is_meta and a * b > 10**7:
                pytest.fail(f"a {a}x{b} layer was allocated")
            __original(self, a, b, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", guarded)
