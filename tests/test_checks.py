"""The shared argument checks (sb3_gap/checks.py): one line naming the value and what is valid. NumPy numbers pass
as plain numbers; devices and env ids are checked the same way by every command that takes them."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from helpers import ENV_ID, empty_or_missing, one_line_error, publish, tiny_dqn, tiny_sweep_args  # tests/ is on sys.path

from sb3_gap import ConvExtractor, policy_kwargs
from sb3_gap.checks import check, check_choice, check_int, check_range
from sb3_gap.hub import pull_from_hub, safe
from sb3_gap.rainbow import Rainbow
from sb3_gap.sweep import SweepSpec


def test_check_int_accepts_and_converts():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", 0, minimum=0) == 0


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2", None])
def test_check_int_rejects(value):
    with pytest.raises(ValueError, match=r"^n_envs must be a positive integer \(e\.g\. 1, 8\), got "):
        check_int("n_envs", value, example="1, 8")


def test_check_int_bounds_in_message():
    with pytest.raises(ValueError, match=r"width_scale must be a positive integer and at most 16, got 17"):
        check_int("width_scale", 17, maximum=16)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0, got -1"):
        check_int("steps", -1, minimum=0)


def test_check_range():
    assert check_range("gamma", 0.99, 0, 1) == 0.99
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match=r"^gamma must be in \[0, 1\], got "):
            check_range("gamma", bad, 0, 1)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0"):
        check_range("lr", 0, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got inf"):
        check_range("lr", float("inf"), low=0, low_open=True)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\) \(e\.g\. 0\.9\), got 1"):
        check_range("sparsity", 1, 0, 1, high_open=True, example="0.9")


def test_check_choice():
    assert check_choice("bottleneck", "gap", {"gap": 1, "flatten": 2}) == "gap"
    with pytest.raises(ValueError, match=r"^Unknown bottleneck 'gapp'; valid choices: \['flatten', 'gap'\]$"):
        check_choice("bottleneck", "gapp", {"gap": 1, "flatten": 2})
    with pytest.raises(ValueError, match="Unknown loss"):
        check_choice("loss", ["unhashable"], ("c51", "mse"))


def test_check():
    check(True, "never")
    with pytest.raises(ValueError, match="^boom$"):
        check(False, "boom")


def test_numpy_numbers_are_accepted_as_plain_numbers():
    """NumPy integers and floats pass as plain Python numbers in policy_kwargs, ConvExtractor, Rainbow and SweepSpec;
    what they store stays JSON-serializable."""
    pk = policy_kwargs(width_scale=np.int64(2), psi_depth=np.int32(1))
    assert pk["features_extractor_kwargs"]["width_scale"] == 2 and type(pk["features_extractor_kwargs"]["width_scale"]) is int
    json.dumps(pk["features_extractor_kwargs"])
    assert ConvExtractor(spaces.Box(0, 255, (4, 10, 10), np.uint8), width_scale=np.int64(2)).features_dim == 1024
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, v_min=np.float32(-1), v_max=np.float64(1), n_atoms=np.int64(11))
    assert (model.v_min, model.v_max, model.n_atoms) == (-1.0, 1.0, 11) and type(model.n_atoms) is int
    spec = SweepSpec(envs=[ENV_ID], width_scales=[np.int64(2)], seeds=np.int64(1))
    spec.validate()
    json.dumps(spec.search_space())


def test_unknown_device_is_refused_in_one_line(tmp_path, capsys):
    from sb3_gap.checks import check_device

    assert check_device("auto") == "auto" and check_device("cpu") == "cpu" and check_device(th.device("cpu")) == "cpu"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db", "--device", "bogus"), "sweep")
    assert "Unknown --device 'bogus'; valid choices: ['auto', 'cpu', 'cuda', 'cuda:N', 'mps']" in line
    with pytest.raises(ValueError, match=r"Unknown device 'bogus'"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=64, batch_size=8, device="bogus")


no_gpu = pytest.mark.skipif(th.cuda.is_available(), reason="checks the machine without a CUDA GPU")


@no_gpu
def test_device_cuda_without_a_gpu_is_refused_everywhere(tmp_path, capsys):
    """--device cuda on a machine without a GPU is an error in Rainbow, sweep, train and gradcam, never a silent CPU run."""
    with pytest.raises(ValueError, match=r"device 'cuda': no CUDA GPU is visible"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=64, batch_size=8, device="cuda")
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db", "--device", "cuda"), "sweep")
    assert "--device 'cuda': no CUDA GPU is visible" in line
    assert not (tmp_path / "s.db").exists()
    line = one_line_error(capsys, ["train", "--algo", "dqn", "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path), "--device", "cuda"], "train")
    assert "--device 'cuda': no CUDA GPU is visible" in line
    model = tmp_path / "m.zip"
    tiny_dqn().save(model)
    line = one_line_error(
        capsys, ["gradcam", str(model), "--algo", "dqn", "--env", ENV_ID, "--device", "cuda:1", "--out", str(tmp_path / "g.png")], "gradcam"
    )
    assert "--device 'cuda:1'" in line and not (tmp_path / "g.png").exists()


PATH_LIKE_IDS = ["..", ".", "../MinAtar/Breakout-v1", "MinAtar/../Breakout-v1", "a\\..\\b", "/etc/passwd", ""]


@pytest.mark.parametrize("env_id", PATH_LIKE_IDS)
def test_path_like_env_ids_are_refused_everywhere(hub_env, dqn_files, tmp_path, capsys, env_id):
    """An env id names folders (runs, Zoo logs): one that is a path is refused by sweep, gradcam, push and pull, given on
    the command line or recorded in a downloaded sb3_gap.json."""
    model, files = dqn_files
    words = f"env id {env_id!r} is not a Gymnasium env id"
    line = one_line_error(capsys, ["sweep", "--envs", env_id, "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "runs")], "sweep")
    assert words in line, line
    model.save(tmp_path / "m.zip")
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", env_id], "gradcam")
    assert words in line, line
    line = one_line_error(capsys, ["push", "--algo", "dqn", "--env", env_id, "-f", str(tmp_path / "logs"), "--repo-id", "a/b", "--no-video"], "push")
    assert words in line, line
    downloads = tmp_path / "dl"
    publish(hub_env, "alice/plain", files)
    line = one_line_error(capsys, ["pull", "--repo-id", "alice/plain", "-f", str(downloads), "--env", env_id], "pull")
    assert words in line or "does not match the repository's env" in line, line
    # A download cannot steer where a pull writes: the env id recorded in sb3_gap.json is checked too.
    config = json.loads(files[safe.CONFIG_FILE])
    repo = f"mallory/env-{abs(hash(env_id)) % 10**6}"
    publish(hub_env, repo, {**files, safe.CONFIG_FILE: json.dumps(dict(config, env_id=env_id)).encode()})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(downloads)], "pull")
    assert words in line and safe.CONFIG_FILE in line, line
    assert empty_or_missing(downloads / "dqn")
    with pytest.raises(ValueError, match="is not a Gymnasium env id"):
        pull_from_hub(repo, downloads, env_id=ENV_ID)
    assert empty_or_missing(downloads / "dqn") and not (downloads / "config.yml").exists()


def test_every_registered_env_id_passes_the_env_id_form_check():
    from sb3_gap.checks import check_env_id_form
    from sb3_gap.envs.protocols import register_ale_ids

    register_ale_ids()
    for env_id in gym.registry:
        check_env_id_form(env_id)
    with pytest.raises(ValueError, match=r"^sb3_gap.json: env id 'MinAtar/Breakout-v1\\n' is not a Gymnasium env id"):
        check_env_id_form("MinAtar/Breakout-v1\n", "sb3_gap.json")
