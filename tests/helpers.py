"""Helpers shared by several test modules: tiny models, the one-line CLI error check, a tiny sweep command line,
publishing to the fake Hub, and a simulated full disk.

Test modules import it as ``from helpers import ...`` (tests/ is on sys.path: pytest's rootdir-relative import).
Fixtures shared by several modules are in conftest.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from fake_hub import TEST_TOKEN, FakeHub
from huggingface_hub import CommitOperationAdd, HfApi
from stable_baselines3 import DQN

from sb3_gap import policy_kwargs
from sb3_gap.cli import main as cli_main
from sb3_gap.hub import safe
from sb3_gap.rainbow import Rainbow
from sb3_gap.replay import FrameReplayBuffer

ENV_ID = "MinAtar/Breakout-v1"
ENV_NAME = "MinAtar-Breakout-v1"  # the env id as rl_zoo3 names folders and files

#: A tiny MLP on the CPU, seeded: for CartPole models that are built and trained for a few dozen steps.
TINY_MLP = dict(policy_kwargs=dict(net_arch=[8]), device="cpu", seed=0)


# --- tiny models -----------------------------------------------------------------------------------------------------


def tiny_dqn(width_scale: int = 1, env_id: str = ENV_ID) -> DQN:
    """An untrained DQN with sb3_gap's extractor (built, never trained: fast)."""
    return DQN("CnnPolicy", gym.make(env_id), buffer_size=64, batch_size=8, learning_starts=0,
               policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap", width_scale=width_scale), seed=0)  # fmt: skip


def tiny_rainbow(n_atoms: int = 5) -> Rainbow:
    """An untrained Rainbow with sb3_gap's extractor (built, never trained)."""
    return Rainbow("CnnPolicy", gym.make(ENV_ID), buffer_size=64, batch_size=8, n_atoms=n_atoms,
                   policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap"), seed=0)  # fmt: skip


def frame_dqn(gamma: float, buffer_kwargs: dict | None = None) -> DQN:
    """A tiny DQN on CartPole replaying through FrameReplayBuffer (learning never starts: acting and storing only)."""
    return DQN("MlpPolicy", "CartPole-v1", buffer_size=200, learning_starts=10_000, gamma=gamma,
               replay_buffer_class=FrameReplayBuffer, replay_buffer_kwargs=buffer_kwargs, **TINY_MLP)  # fmt: skip


# --- the sb3-gap command line ----------------------------------------------------------------------------------------


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], command: str) -> str:
    """Run ``sb3-gap <argv>``, expect a non-zero exit with ONE line ``sb3-gap <command>: error: ...``, return it."""
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    code = info.value.code
    err = capsys.readouterr().err
    message = code if isinstance(code, str) else err.strip().splitlines()[-1] if err.strip() else ""
    assert code not in (0, None), argv
    assert "Traceback" not in err, err
    assert message.startswith(f"sb3-gap {command}: error: "), message
    assert "\n" not in message.strip(), message
    return message


def tiny_sweep_args(tmp_path: Path, *extra: str) -> list[str]:
    """``sb3-gap sweep`` arguments for one QR-DQN cell of 50 steps on MinAtar Breakout, models not saved."""
    return ["sweep", "--envs", ENV_ID, "--algos", "qrdqn", "--bottlenecks", "gap", "--steps", "50", "--eval-freq", "50",
            "--eval-episodes", "1", "--final-evals", "1", "--no-progress", "--no-save-models",
            "--out", str(tmp_path / "runs"), *extra]  # fmt: skip


def empty_or_missing(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --- the fake Hub (tests/fake_hub.py; the ``hub`` / ``hub_env`` fixtures are in conftest.py) ---------------------------


def publish(hub: FakeHub, repo_id: str, files: dict[str, bytes]) -> None:
    """Commit ``files`` (bytes as given) to ``repo_id`` on the fake Hub (created if needed), as any uploader could."""
    api = HfApi(endpoint=hub.endpoint, token=TEST_TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    api.create_commit(repo_id, operations=[CommitOperationAdd(k, v) for k, v in files.items()], commit_message="upload")


def safe_files(model, tmp: Path, config_yml: dict | None = None) -> dict[str, bytes]:
    """The pickle-free files of ``model`` (as sb3_gap pushes them) plus a ``config.yml``."""
    tmp.mkdir(parents=True, exist_ok=True)
    safe.save_safe(model, tmp, ENV_ID)
    files = {name: (tmp / name).read_bytes() for name in (safe.CONFIG_FILE, safe.WEIGHTS_FILE)}
    files["config.yml"] = yaml.safe_dump(config_yml if config_yml is not None else {"policy": "CnnPolicy"}).encode()
    return files


# --- a full disk -----------------------------------------------------------------------------------------------------


def disk_full_on(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Make ``os.fsync`` fail with ENOSPC for files whose name contains ``name`` (what a full disk does to a write);
    returns the paths it failed for."""
    real_fsync, failed = os.fsync, []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if name in Path(path).name:
            failed.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file is written")
    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def temp_files(folder: Path) -> list[Path]:
    """The temporary files an atomic write or a pull leaves behind when it is interrupted (none, when it cleans up)."""
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or "-pull-" in p.name]
