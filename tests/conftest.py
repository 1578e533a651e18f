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


# --- the loopback fake Hugging Face Hub (tests/fake_hub.py), shared by test_hub.py and test_hardening.py ---


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
