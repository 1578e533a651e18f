"""The benchmark scripts (benchmarks/*.py) refuse bad arguments before measuring anything."""

from pathlib import Path

import pytest


def test_throughput_floor_refuses_non_positive_reps(monkeypatch, capsys):
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("throughput_floor", bench / "throughput_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["throughput_floor.py", "--reps", "0"])
    monkeypatch.setattr(module, "measure", lambda *a: pytest.fail("measured with --reps 0"))
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code == 2
    assert "--reps must be a positive integer, got 0" in capsys.readouterr().err.strip().splitlines()[-1]
