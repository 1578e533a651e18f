"""The example scripts run as users run them (short budgets) and save a model that loads back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO

from sb3_gap import Rainbow
from sb3_gap.bottlenecks import GAP
from sb3_gap.params import find_extractor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = {
    "dqn_minatar.py": (DQN, "dqn_minatar_breakout_gap4.zip"),
    "qrdqn_minatar.py": (QRDQN, "qrdqn_minatar_breakout_gap4.zip"),
    "ppo_minatar.py": (PPO, "ppo_minatar_breakout_gap2.zip"),
    "rainbow_minatar.py": (Rainbow, "rainbow_minatar_breakout_gap4.zip"),
}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
@pytest.mark.slow
def test_example_runs_and_saves(script, tmp_path):
    algo, saved = CASES[script]
    # 1,100 steps: past the off-policy examples' learning_starts=1,000, so gradient updates run too
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--steps", "1100"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ParameterReport(phi=" in result.stdout  # the parameter report was printed
    model = algo.load(tmp_path / saved, device="cpu")
    assert model.num_timesteps >= 1100
    assert isinstance(find_extractor(model).bottleneck, GAP)  # the bottleneck every script trains
