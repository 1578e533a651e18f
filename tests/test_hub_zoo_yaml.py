"""sb3_gap.hub.zoo_yaml: a Zoo config names only allow-listed classes, with bounded sizes and no paths; a downloaded
YAML holds plain data only, while local files (zoo_configs/*.yml, a run being pushed) keep their anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sb3_gap.hub import zoo_yaml

# ------------------------------------------------------------------------------------------------
# Zoo configs: only allow-listed classes, with bounded sizes, no paths; local files keep their anchors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"env_wrapper": [{"gymnasium.wrappers.RecordVideo": {"video_folder": "/home/victim/.ssh"}}]},
        {"env_wrapper": [{"gymnasium.wrappers.RecordEpisodeStatistics": {"buffer_length": 10, "log_dir": "../x"}}]},
        {"vec_env_wrapper": "stable_baselines3.common.vec_env.VecVideoRecorder"},
        {"callback": [{"stable_baselines3.common.callbacks.CheckpointCallback": {"save_freq": 1, "save_path": "/etc"}}]},
        {"policy": "evil_module.Policy"},
    ],
)
def test_zoo_config_refuses_path_arguments_file_writers_and_unlisted_policies(entry):
    with pytest.raises(ValueError, match="refused for downloaded configs"):
        zoo_yaml.check_zoo_config(entry)


def test_zoo_config_accepts_trusted_wrappers_and_plain_kwargs_strings():
    zoo_yaml.check_zoo_config({"env_wrapper": [{"gymnasium.wrappers.ClipReward": {"min_reward": -1.0, "max_reward": 1.0}}],
                           "policy_kwargs": "dict(activation_fn=nn.ReLU, net_arch=[64])", "normalize": "dict(norm_obs=True)"})  # fmt: skip


# Callables (not classes) under package prefixes the allow-list trusts: a check of the prefix alone would let them through.
PREFIX_PROBES = [
    "sb3_gap.hub.push.push_to_hub",
    "sb3_gap.sweep.workers.run_sweep",
    "stable_baselines3.common.save_util.save_to_zip_file",
    "gymnasium.make",
    "rl_zoo3.utils.get_latest_run_id",
]


@pytest.mark.parametrize("key", ["env_wrapper", "vec_env_wrapper", "callback", "policy"])
@pytest.mark.parametrize("name", PREFIX_PROBES)
def test_zoo_config_refuses_callables_under_trusted_package_prefixes(key, name):
    with pytest.raises(ValueError, match=rf"{key} names '{re.escape(name)}', which is not an allowed class.*valid choices: \["):
        zoo_yaml.check_zoo_config({key: [{name: {}}] if key != "policy" else name})


@pytest.mark.parametrize(
    "key, name",
    [
        ("vec_env_wrapper", "stable_baselines3.common.vec_env.vec_video_recorder.VecVideoRecorder"),  # a file writer by its module path
        ("vec_env_wrapper", "stable_baselines3.common.vec_env.vec_monitor.VecMonitor"),
        ("env_wrapper", "gymnasium.wrappers.rendering.RecordVideo"),
        ("callback", "rl_zoo3.callbacks.SaveVecNormalizeCallback"),
        ("env_wrapper", "stable_baselines3.common.vec_env.VecFrameStack"),  # a VecEnvWrapper is no env wrapper
    ],
)
def test_zoo_config_refuses_file_writers_and_wrong_kinds_under_any_module_path(key, name):
    with pytest.raises(ValueError, match="refused for downloaded configs"):
        zoo_yaml.check_zoo_config({key: name})


def test_zoo_config_accepts_sb3_gap_wrappers_and_the_repositorys_zoo_configs():
    zoo_yaml.check_zoo_config({"env_wrapper": ["sb3_gap.envs.minatar.MinAtarImage", "rl_zoo3.wrappers.FrameSkip",
                                               "stable_baselines3.common.atari_wrappers.AtariWrapper", "gymnasium.wrappers.TimeLimit"],
                               "vec_env_wrapper": "stable_baselines3.common.vec_env.VecTransposeImage",
                               "callback": "stable_baselines3.common.callbacks.ProgressBarCallback",
                               "policy": "sb3_gap.rainbow.policies.RainbowPolicy"})  # fmt: skip
    for path in sorted((Path(__file__).resolve().parents[1] / "zoo_configs").glob("*.yml")):
        for section in yaml.safe_load(path.read_text()).values():  # local files: their anchors load
            if isinstance(section, dict):
                zoo_yaml.check_zoo_config(section, path.name)


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"frame_stack": 10**9}, "frame_stack must be an integer >= 0 and at most 256"),
        ({"frame_stack": "1000000000"}, "frame_stack must be an integer >= 0 and at most 256"),
        ({"frame_stack": 2.5}, "frame_stack must be an integer"),
        ({"env_wrapper": [{"gymnasium.wrappers.FrameStackObservation": {"stack_size": 10**9}}]}, "stack_size must be an integer"),
    ],
)
def test_zoo_config_bounds_frame_stack_and_stack_size(entry, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        zoo_yaml.check_zoo_config(entry)
    zoo_yaml.check_zoo_config({"frame_stack": 4, "env_wrapper": [{"gymnasium.wrappers.FrameStackObservation": {"stack_size": 4}}]})


def test_load_zoo_yaml_refuses_anchors_unless_allowed_and_caps_the_size(tmp_path):
    """A downloaded YAML may not hold anchors (nested aliases blow up when read); a local one, such as a run being pushed or
    zoo_configs/*.yml, is read with allow_aliases=True. Either is refused above MAX_YAML_BYTES."""
    path = tmp_path / "config.yml"
    path.write_bytes(b"base: &b {frame_stack: 4}\nMinAtar/Breakout-v1: *b\n")
    with pytest.raises(ValueError, match=r"config.yml holds YAML that is not plain data \(line 1\): found the anchor &b"):
        zoo_yaml.load_zoo_yaml(path)
    assert zoo_yaml.load_zoo_yaml(path, allow_aliases=True)["MinAtar/Breakout-v1"] == {"frame_stack": 4}  # a run being pushed
    from sb3_gap.zoo_config import load_section  # the repository's zoo_configs/*.yml use &minatar / *minatar

    assert load_section("dqn", "MinAtar/Breakout-v1")[1]
    path.write_bytes(b"x: " + b"a" * (zoo_yaml.MAX_YAML_BYTES + 1) + b"\n")
    with pytest.raises(ValueError, match=r"config.yml has 1,048,581 bytes, more than the 1,048,576"):
        zoo_yaml.load_zoo_yaml(path)
