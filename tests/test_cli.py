"""The ``sb3-gap`` command lines (sb3_gap/cli.py and each command's ``main``): a refusal is one line, a bug keeps its traceback."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sb3_gap.checks import CannotWrite, MissingFile, MissingPackage, Refused
from sb3_gap.cli import main as cli_main

ENV_ID = "MinAtar/Breakout-v1"


def _sweep(tmp_path: Path) -> tuple[str, str, list[str]]:
    argv = ["sweep", "--envs", ENV_ID, "--algos", "qrdqn", "--bottlenecks", "gap", "--steps", "50", "--eval-freq", "50",
            "--no-progress", "--out", str(tmp_path / "runs"), "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "s"]  # fmt: skip
    return "sb3_gap.sweep.cli", "run_sweep", argv


def _report(tmp_path: Path) -> tuple[str, str, list[str]]:
    argv = ["report", "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "s", "--out", str(tmp_path / "r"), "--reference", "ref.json"]
    return "sb3_gap.sweep.report", "read_reference", argv


def _push(tmp_path: Path) -> tuple[str, str, list[str]]:
    return "sb3_gap.hub", "push_to_hub", ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path), "--repo-id", "alice/agent"]


def _pull(tmp_path: Path) -> tuple[str, str, list[str]]:
    return "sb3_gap.hub", "pull_from_hub", ["pull", "--repo-id", "alice/agent", "-f", str(tmp_path)]


def _gradcam(tmp_path: Path) -> tuple[str, str, list[str]]:
    return "sb3_gap.diagnostics.gradcam", "_run", ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", ENV_ID]


def _train(tmp_path: Path) -> tuple[str, str, list[str]]:
    return "rl_zoo3.train", "train", ["train", "--algo", "dqn", "--env", ENV_ID]


COMMANDS: dict[str, Callable[[Path], tuple[str, str, list[str]]]] = {
    "sweep": _sweep, "report": _report, "push": _push, "pull": _pull, "gradcam": _gradcam, "train": _train,
}  # fmt: skip


def _raising(error: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_a_refusal_in_one_line(command, tmp_path, monkeypatch, capsys):
    module, name, argv = COMMANDS[command](tmp_path)
    monkeypatch.setattr(f"{module}.{name}", _raising(Refused("bad value 'x'; valid choices: ['y']\nsecond line")))
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    code, err = info.value.code, capsys.readouterr().err
    line = code if isinstance(code, str) else err.strip()  # the hub commands print the line and exit with status 1
    assert line == f"sb3-gap {command}: error: bad value 'x'; valid choices: ['y']" and code not in (0, None)
    assert "Traceback" not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bug", [ValueError("a bug inside"), OSError(errno.EIO, "I/O error"), KeyError("key"), ImportError("broken module")])
def test_every_command_keeps_a_bugs_traceback(command, bug, tmp_path, monkeypatch):
    """An exception that is not a refusal (a ``ValueError`` from torch or SB3, an I/O error, ...) is re-raised whole."""
    module, name, argv = COMMANDS[command](tmp_path)
    monkeypatch.setattr(f"{module}.{name}", _raising(bug))
    with pytest.raises(type(bug)) as info:
        cli_main(argv)
    assert info.value is bug and info.value.__traceback__ is not None


def test_refusal_kinds_keep_the_builtin_exception_they_stand_for():
    full = CannotWrite(errno.ENOSPC, "No space left on device", "/runs/curve.json")
    assert isinstance(full, OSError) and isinstance(full, Refused) and full.errno == errno.ENOSPC
    assert str(full) == "[Errno 28] No space left on device: '/runs/curve.json'"
    assert isinstance(MissingFile("no run"), FileNotFoundError) and isinstance(MissingPackage("pip install x"), ImportError)


def test_push_names_a_gym_package_it_cannot_import_in_one_line(tmp_path, capsys):
    argv = ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path), "--repo-id", "alice/agent", "--gym-packages", "no_such_pkg_x"]
    with pytest.raises(SystemExit):
        cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert err.startswith("sb3-gap push: error: --gym-packages no_such_pkg_x: cannot import it") and "\n" not in err


def test_push_refuses_an_unregistered_env_id_before_loading_anything(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["push", "--algo", "dqn", "--env", "MinAtar/Breakout-v9", "-f", str(tmp_path), "--repo-id", "alice/agent"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("sb3-gap push: error: Unknown env id 'MinAtar/Breakout-v9'") and "MinAtar/Breakout-v1" in err
