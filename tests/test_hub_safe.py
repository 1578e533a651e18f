"""sb3_gap.hub.safe: a downloaded sb3_gap.json is checked against model.safetensors before any network is allocated:
no local or unlisted attributes, bounded shapes and depths, finite weights, no tensor the network lacks."""

from __future__ import annotations

import json
import re
import time

import pytest
import safetensors.torch
import torch as th
from helpers import ENV_ID, one_line_error, publish, tiny_dqn  # tests/ is on sys.path (pytest's rootdir-relative import)
from stable_baselines3 import DQN

from sb3_gap.hub import safe

# ------------------------------------------------------------------------------------------------
# sb3_gap.json and model.safetensors: checked against each other before any network is allocated
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_config(tmp_path):
    model = tiny_dqn()
    safe.save_safe(model, tmp_path, ENV_ID)
    return json.loads((tmp_path / safe.CONFIG_FILE).read_text()), tmp_path / safe.WEIGHTS_FILE


def test_safe_config_cannot_set_local_or_unlisted_model_attributes(saved_config):
    config, weights = saved_config
    assert "tensorboard_log" not in config["model_attrs"]  # what this machine logs to is not published either
    config["model_attrs"]["tensorboard_log"] = "/tmp/sb3_gap-evil-tensorboard"
    config["model_attrs"]["verbose"] = 2
    model = safe.build_from_config(config, weights, device="cpu")
    assert model.tensorboard_log is None and model.verbose == 0  # the local defaults, not the download's
    for key, value in (("replay_buffer", {"x": 1}), ("_vec_normalize_env", None), ("lr_schedule", 0.1), ("env", "x")):
        bad = json.loads(json.dumps(config))
        bad["model_attrs"][key] = value
        with pytest.raises(ValueError, match=f"unexpected attribute '{key}'"):
            safe.build_from_config(bad, weights, device="cpu")


def test_safe_config_refuses_a_huge_observation_shape_before_building_the_space(saved_config, monkeypatch):
    config, weights = saved_config
    config["observation_space"]["shape"] = [4, 100_000, 100_000]  # 37 GiB of bounds
    monkeypatch.setattr(safe, "space_from_plain", lambda *a: pytest.fail("a space was built"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"40,000,000,000 elements, more than the 1,048,576"):
        safe.build_from_config(config, weights, device="cpu")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["action_space"].update(n=10**9), ["q_net", "[1000000000,", "config and the weights"]),
        (lambda c: c["observation_space"].update(shape=[7, 10, 10]), [", 7, 3, 3]", ", 4, 3, 3]"]),
        (lambda c: c["policy_kwargs"]["features_extractor_kwargs"].update(psi_depth=40), ["does not have"]),
        (lambda c: c["model_attrs"].update(n_envs=10**6), ["n_envs must be an integer in [1, 64]"]),
    ],
)
def test_safe_config_shapes_must_match_the_weights_before_the_model_is_allocated(saved_config, monkeypatch, edit, words):
    config, weights = saved_config
    edit(config)
    monkeypatch.setattr(DQN, "_setup_model", lambda self: pytest.fail("the model was allocated"))
    with pytest.raises(ValueError) as info:
        safe.build_from_config(config, weights, device="cpu")
    for word in words:
        assert word in str(info.value), str(info.value)


def test_safe_config_with_a_huge_depth_is_refused_before_building(saved_config, no_big_layers):
    config, weights = saved_config
    config["policy_kwargs"]["features_extractor_kwargs"].update(psi_depth=2_000)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"psi_depth must be an integer >= 0 and at most 64 .*got 2000"):
        safe.build_from_config(config, weights, device="cpu")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_safe_build_and_pull_refuse_non_finite_weights(hub_env, dqn_files, saved_config, tmp_path, capsys, value):
    import safetensors.torch

    config, weights = saved_config
    tensors = safetensors.torch.load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = value
    safetensors.torch.save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"model.safetensors holds NaN or infinite values in '{re.escape(name)}'"):
        safe.build_from_config(config, weights, device="cpu")
    _, files = dqn_files
    repo = f"eve/non-finite-{str(value)}"
    publish(hub_env, repo, {**files, safe.WEIGHTS_FILE: weights.read_bytes()})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert "NaN or infinite values" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def test_safe_strict_load_refuses_an_extra_tensor_in_one_line_without_the_meta_check(dqn_files, tmp_path, monkeypatch):
    """Where the network cannot be built on the meta device (so shapes are not compared first), the strict load of the
    weights still refuses a tensor the network lacks, in one line."""
    model, files = dqn_files
    tensors = safetensors.torch.load(files[safe.WEIGHTS_FILE])
    tensors["q_net.backdoor.weight"] = th.zeros(3, 3)
    weights = tmp_path / safe.WEIGHTS_FILE
    weights.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))
    config = json.loads(files[safe.CONFIG_FILE])

    def cannot_build_on_meta(model):
        raise NotImplementedError("a layer that reads tensor values")

    monkeypatch.setattr(safe, "_meta_shapes", cannot_build_on_meta)  # then only the strict load compares
    with pytest.raises(ValueError) as info:
        safe.build_from_config(config, weights, device="cpu")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{safe.WEIGHTS_FILE} does not fit the network") and "q_net.backdoor.weight" in message
