"""sb3_gap.hub end to end with the REAL huggingface_hub client against a loopback fake Hub (tests/fake_hub.py).

Covers: the pushed file set and model card metadata, pull -> load -> predict equality on the
pickle-free path (proved pickle-free by making every unpickler raise) and on the opt-in pickle
path, the Zoo layout after ``sb3-gap pull`` (and rl_zoo3's enjoy on it), and the failure modes
(no token, no network, missing repo, rejected token, interrupted upload, unsafe downloads) with
the local run folder byte-for-byte untouched and the token never shown.

More refusals of unsafe downloads, by module: test_hub_pull.py (sb3_gap/hub/pull.py), test_hub_safe.py
(sb3_gap/hub/safe.py) and test_hub_zoo_yaml.py (sb3_gap/hub/zoo_yaml.py). Each test module gets its own fake Hub,
which answers at most ``max_requests`` requests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import cloudpickle
import gymnasium as gym
import huggingface_hub
import numpy as np
import pytest
import torch as th
import yaml
from fake_hub import TEST_TOKEN  # tests/ is on sys.path (pytest's rootdir-relative import)
from helpers import ENV_ID, ENV_NAME, one_line_error, publish, tiny_dqn
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, metadata_load
from sb3_contrib import QRDQN
from stable_baselines3 import DQN, PPO

import sb3_gap
from sb3_gap.cli import main as cli_main
from sb3_gap.hub import HubError, load_from_hub, model_file_name, plain, pull_from_hub, push_to_hub, safe
from sb3_gap.rainbow import Rainbow

TOKEN = TEST_TOKEN
PKW = dict(encoder="impala", bottleneck="gap", width_scale=1)


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file (and the set of directories) under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


def small_model(cls, seed: int = 0):
    env = gym.make(ENV_ID)
    if cls is PPO:
        model = PPO("CnnPolicy", env, n_steps=16, batch_size=8, n_epochs=1, policy_kwargs=sb3_gap.policy_kwargs(**PKW), seed=seed)
    elif cls is Rainbow:  # all Rainbow parts on, so every head / noisy layer is in the state dict
        model = Rainbow(
            "CnnPolicy",
            env,
            buffer_size=64,
            learning_starts=0,
            batch_size=8,
            train_freq=4,
            exploration_steps=100,
            dueling=True,
            noisy=True,
            double_q=True,
            policy_kwargs=sb3_gap.policy_kwargs(**PKW),
            seed=seed,
        )
    else:
        model = cls(
            "CnnPolicy", env, buffer_size=64, learning_starts=0, batch_size=8, train_freq=4, policy_kwargs=sb3_gap.policy_kwargs(**PKW), seed=seed
        )
    model.learn(32)
    return model


def sample_obs(n: int = 16) -> np.ndarray:
    space = gym.make(ENV_ID).observation_space
    space.seed(1)
    return np.stack([space.sample() for _ in range(n)])


def assert_same_policy(a, b) -> None:
    obs = sample_obs()
    assert np.array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert sa.keys() == sb.keys() and all(th.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.fixture(autouse=True)
def _hub_env(hub_env):
    """Every test here talks to the module's fake Hub (``hub`` / ``hub_env`` in conftest.py), loopback only."""
    return hub_env


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    """A run folder exactly as rl_zoo3's ExperimentManager writes it (logs/dqn/<env>_1/...)."""
    logs = tmp_path_factory.mktemp("zoo") / "logs"
    run = logs / "dqn" / f"{ENV_NAME}_1"
    params = run / ENV_NAME
    params.mkdir(parents=True)
    model = small_model(DQN)
    model.save(run / ENV_NAME)  # <env>.zip, as save_trained_model
    model.save(run / "best_model")
    hyper = OrderedDict(
        [
            ("batch_size", 8),
            ("buffer_size", 64),
            ("learning_starts", 0),
            ("n_timesteps", 32),
            ("policy", "CnnPolicy"),
            ("policy_kwargs", "dict(features_extractor_class=ConvExtractor, net_arch=[])"),
            ("train_freq", 4),
        ]
    )
    with open(params / "config.yml", "w") as f:
        yaml.dump(hyper, f)  # the Zoo dumps an OrderedDict (a python/object/apply tag)
    with open(params / "args.yml", "w") as f:
        yaml.dump(OrderedDict([("algo", "dqn"), ("env", ENV_ID), ("env_kwargs", None), ("seed", 0)]), f)
    (params / "command.txt").write_text("python -m rl_zoo3.train --algo dqn --env MinAtar/Breakout-v1")
    np.savez(run / "evaluations.npz", timesteps=np.array([32]), results=np.zeros((1, 2)), ep_lengths=np.ones((1, 2)))
    (run / "0.monitor.csv").write_text('#{"t_start": 0, "env_id": "MinAtar/Breakout-v1"}\nr,l,t\n0.0,10,0.1\n')
    return logs, model


def push_cli(logs: Path, repo_id: str, *extra: str) -> None:
    cli_main(["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(logs), "--repo-id", repo_id, "--n-eval-episodes", "2", "--no-video", *extra])


def enjoy(folder: Path, n: int = 10, algo: str = "dqn", exp_id: int = 0) -> subprocess.CompletedProcess:
    """Run rl_zoo3's own enjoy for ``n`` steps on the Zoo run folder ``folder`` (run ``exp_id``; 0: the latest), with this
    checkout's sb3_gap importable."""
    argv = [sys.executable, "-m", "rl_zoo3.enjoy", "--algo", algo, "--env", ENV_ID, "-f", str(folder), "--exp-id", str(exp_id),
            "-n", str(n), "--no-render", "--gym-packages", "sb3_gap", "--device", "cpu"]  # fmt: skip
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang only: a fresh interpreter importing torch and rl_zoo3 takes minutes on a loaded machine
        env={**os.environ, "PYTHONPATH": str(Path(sb3_gap.__file__).parents[1])},
    )


# ------------------------------------------------------------------------------------------------
# push: file set, one commit, card metadata
# ------------------------------------------------------------------------------------------------


def test_push_zoo_run_uploads_zoo_files_and_card_in_one_commit(hub, zoo_run, tmp_path):
    logs, model = zoo_run
    before = tree_hash(logs)
    push_cli(logs, "alice/dqn-gap-breakout")
    assert tree_hash(logs) == before  # the run folder is only read

    repo = hub.repos["alice/dqn-gap-breakout"]
    assert len(repo.commits) == 1
    assert [p for m, p in hub.requests if m == "POST" and "/commit/" in p and "alice/dqn-gap-breakout" in p].__len__() == 1
    assert set(repo.files) == {
        f"dqn-{ENV_NAME}.zip",
        "model.safetensors",
        "sb3_gap.json",
        "config.yml",
        "args.yml",
        "env_kwargs.yml",
        "results.json",
        "train_eval_metrics.zip",
        "README.md",
    }
    run = logs / "dqn" / f"{ENV_NAME}_1"
    assert repo.files[f"dqn-{ENV_NAME}.zip"] == (run / f"{ENV_NAME}.zip").read_bytes()
    assert repo.files["config.yml"] == (run / ENV_NAME / "config.yml").read_bytes()
    assert repo.files["args.yml"] == (run / ENV_NAME / "args.yml").read_bytes()
    with zipfile_from(repo.files["train_eval_metrics.zip"]) as z:
        assert sorted(z.namelist()) == ["0.monitor.csv", "evaluations.npz"]

    results = json.loads(repo.files["results.json"])
    assert results["n_eval_episodes"] == 2 and results["is_deterministic"] is True
    assert len(results["episode_rewards"]) == 2
    assert results["mean_reward"] == pytest.approx(np.mean(results["episode_rewards"]))

    readme = hub.repos["alice/dqn-gap-breakout"].files["README.md"].decode()
    path = tmp_path / "README.md"
    path.write_text(readme, encoding="utf-8")
    meta = metadata_load(path)
    assert meta["library_name"] == "stable-baselines3"
    for tag in (
        "sb3_gap",
        "deep-reinforcement-learning",
        "reinforcement-learning",
        "dqn",
        ENV_ID,
        "encoder-impala",
        "bottleneck-gap",
        "width-scale-1",
    ):
        assert tag in meta["tags"]
    result = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "DQN"
    assert result["task"]["type"] == "reinforcement-learning" and result["dataset"]["name"] == ENV_ID
    metric = result["metrics"][0]
    assert metric["type"] == "mean_reward"
    assert metric["value"] == f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    card = ModelCard(readme)
    assert card.data.eval_results[0].metric_type == "mean_reward"
    rep = sb3_gap.parameter_report(model)
    assert f"| φ (encoder) | {rep.phi:,} |" in card.text and f"| connection φ→ψ | {rep.connection:,} |" in card.text
    assert "2** episodes" in card.text and "deterministic" in card.text
    assert 'load_from_hub("alice/dqn-gap-breakout")' in card.text


def test_push_evaluates_with_the_config_sections_env_kwargs(hub, tmp_path):
    """A Zoo run trained from zoo_configs' MinAtar section (env_kwargs: full 6-action set, in config.yml, not args.yml)
    is evaluated on that env, as rl_zoo3's enjoy builds it; the pushed env_kwargs.yml carries the setting."""
    env = gym.make(ENV_ID, use_minimal_action_set=False)
    model = DQN("CnnPolicy", env, buffer_size=64, learning_starts=0, batch_size=8, policy_kwargs=sb3_gap.policy_kwargs(**PKW), seed=0)
    assert model.action_space.n == 6 and gym.make(ENV_ID).action_space.n == 3
    params = tmp_path / "logs" / "dqn" / f"{ENV_NAME}_1" / ENV_NAME
    params.mkdir(parents=True)
    model.save(params.parent / ENV_NAME)
    hyper = OrderedDict([("buffer_size", 64), ("env_kwargs", {"use_minimal_action_set": False}), ("policy", "CnnPolicy")])
    (params / "config.yml").write_text(yaml.dump(hyper))
    (params / "args.yml").write_text(yaml.dump(OrderedDict([("algo", "dqn"), ("env", ENV_ID), ("env_kwargs", None)])))
    push_cli(tmp_path / "logs", "gina/dqn-full-actions", "--n-eval-episodes", "1")
    assert yaml.safe_load(hub.repos["gina/dqn-full-actions"].files["env_kwargs.yml"]) == {"use_minimal_action_set": False}


def zipfile_from(data: bytes):
    return zipfile.ZipFile(io.BytesIO(data))


# ------------------------------------------------------------------------------------------------
# load: pickle-free path and opt-in pickle path
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way to unpickle raises: pickle, cloudpickle, torch.load (which uses pickle)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted on the pickle-free path")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    for mod in (pickle, cloudpickle):
        monkeypatch.setattr(mod, "loads", forbidden)
        monkeypatch.setattr(mod, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(th, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)


def test_no_unpickling_fixture_bites(no_unpickling, zoo_run):
    logs, _ = zoo_run
    with pytest.raises(AssertionError, match="unpickling"):
        DQN.load(logs / "dqn" / f"{ENV_NAME}_1" / f"{ENV_NAME}.zip")


@pytest.mark.parametrize("cls", [DQN, QRDQN, PPO, Rainbow], ids=lambda c: c.__name__)
def test_safe_load_predicts_like_original_and_never_unpickles(hub, cls, tmp_path, caplog, request):
    model = small_model(cls)
    repo_id = f"bob/{cls.__name__.lower()}-gap"
    info = push_to_hub(model, repo_id, env_id=ENV_ID, n_eval_episodes=1, video=False)
    assert "model.safetensors" in info.files and model_file_name(safe.algo_name(model), ENV_ID) in info.files

    request.getfixturevalue("no_unpickling")  # from here on, any unpickling fails the test
    with caplog.at_level("INFO", logger="sb3_gap.hub"):
        loaded, load_info = load_from_hub(repo_id, return_info=True, cache_dir=tmp_path / "cache")
    assert load_info.path == "safetensors" and load_info.algo == safe.algo_name(model)
    assert "pickle-free path" in caplog.text
    assert type(loaded) is cls
    assert_same_policy(model, loaded)


@pytest.mark.parametrize("cls", [DQN, QRDQN], ids=lambda c: c.__name__)
def test_frame_replay_model_round_trips_pickle_free(hub, cls, tmp_path, request):
    """A DQN / QR-DQN with sb3_gap's FrameReplayBuffer (as zoo_configs' pixel sections build them): the replay
    class and its kwargs (frame stack, n-step) come back by name, so the loaded model trains on, n-step intact."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_gap.replay import FrameReplayBuffer

    def venv():
        return VecFrameStack(make_vec_env(ENV_ID, n_envs=1, seed=0), n_stack=2)

    kwargs = dict(frame_stack=2, n_steps=3, gamma=0.9)
    model = cls(
        "CnnPolicy",
        venv(),
        buffer_size=64,
        learning_starts=0,
        batch_size=8,
        train_freq=4,
        gamma=0.9,
        replay_buffer_class=FrameReplayBuffer,
        replay_buffer_kwargs=kwargs,
        policy_kwargs=sb3_gap.policy_kwargs(**PKW),
        seed=0,
    )
    model.learn(32)
    repo_id = f"frank/{cls.__name__.lower()}-frame-replay"
    push_to_hub(model, repo_id, env_id=ENV_ID, eval_env=venv(), n_eval_episodes=1, video=False)
    config = json.loads(hub.repos[repo_id].files[safe.CONFIG_FILE])  # as published
    assert config["model_attrs"]["replay_buffer_class"] == {"__class__": "sb3_gap.replay:FrameReplayBuffer"}
    assert "replay_buffer_class" not in config["dropped_attrs"]

    request.getfixturevalue("no_unpickling")
    loaded, info = load_from_hub(repo_id, return_info=True, cache_dir=tmp_path / "c")
    assert info.path == "safetensors" and type(loaded) is cls
    assert loaded.replay_buffer_class is FrameReplayBuffer and loaded.replay_buffer_kwargs == kwargs
    assert isinstance(loaded.replay_buffer, FrameReplayBuffer)
    assert (loaded.replay_buffer.frame_stack, loaded.replay_buffer.n_steps) == (2, 3)
    model.observation_space.seed(1)
    obs = np.stack([model.observation_space.sample() for _ in range(16)])
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.set_env(venv())
    loaded.learn(24, reset_num_timesteps=False)  # trains on: stacks rebuilt, 3-step discounts sampled
    batch = loaded.replay_buffer.sample(8)
    assert batch.observations.shape[1:] == model.observation_space.shape
    assert {round(float(d), 5) for d in batch.discounts.cpu().numpy().ravel()} <= {0.9, 0.81, 0.729}  # gamma^k, k <= 3


def test_kron_model_round_trips_pickle_free(hub, tmp_path, request):
    """A model trained with ``policy_kwargs(..., optimizer="kron")`` is pushed pickle-free and pulled back: the
    optimizer class (sb3_gap.optim.Kron) comes back by name, so the loaded model builds Kron for further training."""
    from sb3_gap.optim import Kron

    # The small MinAtar encoder and no training step: Kron's preconditioners for the IMPALA encoder take minutes on CPU.
    model = DQN(
        "CnnPolicy",
        ENV_ID,
        buffer_size=64,
        learning_starts=0,
        batch_size=8,
        policy_kwargs=sb3_gap.policy_kwargs(encoder="minatar", bottleneck="gap", optimizer="kron"),
        seed=0,
    )
    push_to_hub(model, "kate/dqn-kron", env_id=ENV_ID, n_eval_episodes=1, video=False)
    config = json.loads(hub.repos["kate/dqn-kron"].files[safe.CONFIG_FILE])  # as published
    assert config["policy_kwargs"]["optimizer_class"] == {"__class__": "sb3_gap.optim:Kron"}

    request.getfixturevalue("no_unpickling")
    loaded, info = load_from_hub("kate/dqn-kron", return_info=True, cache_dir=tmp_path / "c")
    assert info.path == "safetensors" and type(loaded) is DQN
    assert loaded.policy_kwargs["optimizer_class"] is Kron and isinstance(loaded.policy.optimizer, Kron)
    assert_same_policy(model, loaded)


def test_unregistered_replay_class_drops_its_kwargs_too():
    """A replay class the loader cannot name is dropped with its kwargs (else SB3's default buffer would get them)."""
    from sb3_gap.replay import FrameReplayBuffer

    class MyReplay(FrameReplayBuffer):
        pass

    model = DQN(
        "CnnPolicy",
        ENV_ID,
        buffer_size=64,
        replay_buffer_class=MyReplay,
        replay_buffer_kwargs=dict(n_steps=2, gamma=0.9),
        policy_kwargs=sb3_gap.policy_kwargs(**PKW),
    )
    config, dropped = safe.model_to_plain(model, ENV_ID)
    assert {"replay_buffer_class", "replay_buffer_kwargs"} <= set(dropped)
    assert "replay_buffer_kwargs" not in config["model_attrs"]


def zoo_style_repo(hub, repo_id: str, model) -> None:
    """A repository as rl_zoo3 / huggingface_sb3 publish it: only the pickled SB3 zip, no safetensors."""
    buf = io.BytesIO()
    model.save(buf)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(repo_id)
    api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd(f"dqn-{ENV_NAME}.zip", buf.getvalue()),
            CommitOperationAdd("config.yml", yaml.dump(OrderedDict([("policy", "CnnPolicy")])).encode()),
            CommitOperationAdd("args.yml", yaml.dump({"env_kwargs": None}).encode()),
            CommitOperationAdd("env_kwargs.yml", b"{}\n"),
        ],
        commit_message="zoo push",
    )


def test_pickle_path_needs_explicit_opt_in(hub, zoo_run, tmp_path, caplog):
    _, model = zoo_run
    zoo_style_repo(hub, "carol/dqn-zoo", model)
    with pytest.raises(HubError, match="allow_pickle=True"):
        load_from_hub("carol/dqn-zoo", algo="dqn", cache_dir=tmp_path / "c")
    with caplog.at_level("INFO", logger="sb3_gap.hub"):
        loaded, info = load_from_hub("carol/dqn-zoo", algo="dqn", env_id=ENV_ID, allow_pickle=True, return_info=True, cache_dir=tmp_path / "c")
    assert info.path == "pickle" and "UNPICKLING" in caplog.text
    assert_same_policy(model, loaded)


# ------------------------------------------------------------------------------------------------
# pull: Zoo layout, enjoy
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pull_builds_zoo_run_that_rl_zoo3_loads(hub, zoo_run, tmp_path, capsys):
    logs, model = zoo_run
    if "alice/dqn-gap-breakout" not in hub.repos:
        push_cli(logs, "alice/dqn-gap-breakout")
    downloads = tmp_path / "downloads"
    cli_main(["pull", "--repo-id", "alice/dqn-gap-breakout", "-f", str(downloads)])
    out = capsys.readouterr().out
    assert "safetensors path" in out
    run = downloads / "dqn" / f"{ENV_NAME}_1"
    assert {p.name for p in (run / ENV_NAME).iterdir()} == {"config.yml", "args.yml", "env_kwargs.yml"}
    assert (run / f"{ENV_NAME}.zip").is_file() and (run / "evaluations.npz").is_file() and (run / "0.monitor.csv").is_file()
    assert not [p for p in (downloads / "dqn").iterdir() if p.name.startswith(".")]  # no staging leftovers

    from rl_zoo3.utils import get_model_path, get_saved_hyperparams

    _, model_path, log_path = get_model_path(0, str(downloads), "dqn", ENV_NAME)
    hyper, _ = get_saved_hyperparams(os.path.join(log_path, ENV_NAME), test_mode=True)
    assert hyper["policy"] == "CnnPolicy"
    assert_same_policy(model, DQN.load(model_path, buffer_size=1))
    assert DQN.load(model_path, buffer_size=1).exploration_initial_eps == model.exploration_initial_eps

    # A second pull never touches the first: it creates run 2.
    first = tree_hash(run)
    info = pull_from_hub("alice/dqn-gap-breakout", downloads, cache_dir=tmp_path / "c2")
    assert info.log_path.endswith(f"{ENV_NAME}_2") and tree_hash(run) == first
    with pytest.raises(FileExistsError, match="never overwritten"):
        pull_from_hub("alice/dqn-gap-breakout", downloads, exp_id=1, cache_dir=tmp_path / "c2")
    assert tree_hash(run) == first

    # The Zoo's own enjoy runs on the pulled folder.
    proc = enjoy(downloads, n=30, exp_id=1)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_pull_zip_only_repo_needs_allow_pickle(hub, zoo_run, tmp_path):
    _, model = zoo_run
    if "carol/dqn-zoo" not in hub.repos:
        zoo_style_repo(hub, "carol/dqn-zoo", model)
    downloads = tmp_path / "dl"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pull", "--repo-id", "carol/dqn-zoo", "-f", str(downloads), "--algo", "dqn", "--env", ENV_ID])
    assert exit_info.value.code == 1 and not downloads.exists()
    cli_main(["pull", "--repo-id", "carol/dqn-zoo", "-f", str(downloads), "--algo", "dqn", "--env", ENV_ID, "--allow-pickle"])
    run = downloads / "dqn" / f"{ENV_NAME}_1"
    assert_same_policy(model, DQN.load(run / f"{ENV_NAME}.zip", buffer_size=1))


def test_pull_refuses_executable_yaml(hub, zoo_run, tmp_path):
    logs, model = zoo_run
    repo_id = "mallory/dqn-evil"
    push_to_hub(model, repo_id, env_id=ENV_ID, n_eval_episodes=1, video=False)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    evil = b"!!python/object/apply:os.system ['echo pwned']\n"
    api.create_commit(repo_id, operations=[CommitOperationAdd("config.yml", evil)], commit_message="evil")
    with pytest.raises(ValueError, match="not plain data"):
        pull_from_hub(repo_id, tmp_path / "dl", cache_dir=tmp_path / "c")
    api.create_commit(
        repo_id, operations=[CommitOperationAdd("config.yml", b"normalize: \"__import__('os').system('x')\"\n")], commit_message="evil 2"
    )
    with pytest.raises(HubError, match="refused for downloaded configs"):
        pull_from_hub(repo_id, tmp_path / "dl", cache_dir=tmp_path / "c")
    api.create_commit(repo_id, operations=[CommitOperationAdd("config.yml", b"env_wrapper: builtins.exec\n")], commit_message="evil 3")
    with pytest.raises(HubError, match="not an allowed class"):
        pull_from_hub(repo_id, tmp_path / "dl", cache_dir=tmp_path / "c")
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def test_safe_config_refuses_unknown_classes_and_attributes(tmp_path):
    model = small_model(DQN)
    safe.save_safe(model, tmp_path)
    config = safe.read_config(tmp_path / safe.CONFIG_FILE)
    bad = json.loads(json.dumps(config))
    bad["policy_kwargs"]["features_extractor_class"] = {"__class__": "os:system"}
    with pytest.raises(ValueError, match="not registered"):
        safe.build_from_config(bad, tmp_path / safe.WEIGHTS_FILE)
    bad = json.loads(json.dumps(config))
    bad["model_attrs"]["__class__"] = "x"
    with pytest.raises(ValueError, match="unexpected attribute"):
        safe.build_from_config(bad, tmp_path / safe.WEIGHTS_FILE)
    bad = json.loads(json.dumps(config))
    bad["policy"] = "EvilPolicy"
    with pytest.raises(ValueError, match="valid choices"):
        safe.build_from_config(bad, tmp_path / safe.WEIGHTS_FILE)
    with pytest.raises(plain.NotPlainData, match="not plain data"):
        plain.encode_plain({"f": lambda x: x})


# ------------------------------------------------------------------------------------------------
# failures: clear errors, nothing local changed, no token shown
# ------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def test_push_without_token(hub, zoo_run, monkeypatch, capsys):
    logs, _ = zoo_run
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    before, n_requests = tree_hash(logs), len(hub.requests)
    with pytest.raises(SystemExit):
        push_cli(logs, "alice/no-token")
    err = capsys.readouterr().err
    assert "No Hugging Face token" in err and "hf auth login" in err and "HF_TOKEN" in err
    assert len(hub.requests) == n_requests and tree_hash(logs) == before


@pytest.mark.parametrize("failure", ["no-network", "bad-token", "interrupted"])
def test_push_failures_are_clear_and_leave_run_untouched(hub, zoo_run, monkeypatch, capsys, failure):
    logs, _ = zoo_run
    before = tree_hash(logs)
    repo_id = f"alice/fail-{failure}"
    expected = {"no-network": "connection", "bad-token": "refused the token", "interrupted": "interrupted"}[failure]
    if failure == "no-network":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    elif failure == "bad-token":
        monkeypatch.setenv("HF_TOKEN", TOKEN[:-4] + "XXXX")
    else:
        hub.fail_commit = "drop"
    try:
        with pytest.raises(SystemExit):
            push_cli(logs, repo_id)
    finally:
        hub.fail_commit = None
    out = capsys.readouterr()
    assert expected in out.err and "error:" in out.err
    assert_no_token(out.out, out.err, TOKEN[:-4])
    assert tree_hash(logs) == before
    assert not hub.repos.get(repo_id) or not hub.repos[repo_id].commits  # nothing half-committed


def test_hub_error_never_contains_token(hub, zoo_run):
    logs, _ = zoo_run
    with pytest.raises(HubError) as e:
        push_to_hub(
            logs, "alice/x", algo="dqn", env_id=ENV_ID, token=TOKEN, endpoint=f"http://127.0.0.1:{_closed_port()}", n_eval_episodes=1, video=False
        )
    import traceback

    assert_no_token(str(e.value), "".join(traceback.format_exception(e.value)))


def test_missing_repo_is_a_clear_error(hub, tmp_path):
    with pytest.raises(HubError, match="'nobody/missing' was not found"):
        load_from_hub("nobody/missing", cache_dir=tmp_path)
    with pytest.raises(HubError, match="was not found"):
        pull_from_hub("nobody/missing", tmp_path / "dl", cache_dir=tmp_path)
    assert not (tmp_path / "dl").exists()


def test_no_network_on_pull(tmp_path):
    with pytest.raises(HubError, match="connection"):
        load_from_hub("alice/x", endpoint=f"http://127.0.0.1:{_closed_port()}", cache_dir=tmp_path)


def test_bad_input_is_a_value_error(zoo_run):
    logs, model = zoo_run
    with pytest.raises(ValueError, match="repo_id must look like"):
        push_to_hub(model, "no-slash", env_id=ENV_ID)
    with pytest.raises(ValueError, match="valid choices"):
        push_to_hub(logs, "a/b", algo="sac2", env_id=ENV_ID)
    with pytest.raises(ValueError, match="n_eval_episodes"):
        push_to_hub(model, "a/b", env_id=ENV_ID, n_eval_episodes=0)
    with pytest.raises(ValueError, match="does not match"):
        push_to_hub(model, "a/b", algo="qrdqn", env_id=ENV_ID)
    with pytest.raises(FileNotFoundError, match="No Zoo run"):
        push_to_hub(logs, "a/b", algo="ppo", env_id=ENV_ID)


@pytest.mark.slow
def test_pull_rainbow_then_zoo_enjoy(hub, tmp_path):
    model = small_model(Rainbow)
    push_to_hub(model, "dave/rainbow-gap", env_id=ENV_ID, n_eval_episodes=1, video=False)
    downloads = tmp_path / "downloads"
    cli_main(["pull", "--repo-id", "dave/rainbow-gap", "-f", str(downloads)])
    run = downloads / "rainbow" / f"{ENV_NAME}_1"
    assert_same_policy(model, Rainbow.load(run / f"{ENV_NAME}.zip"))
    proc = enjoy(downloads, n=20, algo="rainbow")
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# downloads are data: what pull writes is the checked data, re-serialized; sizes are capped before download
# ------------------------------------------------------------------------------------------------

# rl_zoo3's enjoy evals config.yml's `normalize`; this expression, if ever evaluated, creates the marker file.
MARKER_EXPR = "__import__('pathlib').Path({marker!r}).touch() or dict(norm_obs=False, norm_reward=False)"


@pytest.fixture
def pushed_files(hub_env, zoo_run):
    """The files of a small agent pushed from a Zoo run (config.yml, args.yml, env_kwargs.yml as the Zoo writes them)."""
    logs, _ = zoo_run
    if "alice/dqn-gap-breakout" not in hub_env.repos:  # pushed once per module
        push_cli(logs, "alice/dqn-gap-breakout")
    return dict(hub_env.repos["alice/dqn-gap-breakout"].files)


def hidden_ordereddict(key: str, hidden: dict, visible: list | None = None) -> bytes:
    """A mapping-form OrderedDict whose `args` hold harmless pairs and whose `key` (kwds, dictitems, state, listitems)
    holds ``hidden``: yaml.UnsafeLoader applies it, a reader of `args` alone never sees it."""
    visible = visible if visible is not None else [["policy", "CnnPolicy"]]
    payload: object = list(hidden.items()) if key == "listitems" else hidden
    return yaml.dump({"args": [visible], key: payload}).replace("args:", "!!python/object/apply:collections.OrderedDict\nargs:", 1).encode()


HIDDEN_KEYS = ["dictitems", "kwds", "state", "listitems"]


@pytest.mark.parametrize("file", ["config.yml", "args.yml", "env_kwargs.yml"])
@pytest.mark.parametrize("key", HIDDEN_KEYS)
def test_pull_refuses_hidden_ordereddict_keys(hub, pushed_files, tmp_path, key, file):
    """An OrderedDict whose `args` look harmless and whose kwds / dictitems / state / listitems hide a payload (config.yml:
    a `normalize` expression enjoy would eval, creating a marker; args.yml / env_kwargs.yml: env_kwargs that reach the env
    constructor unchecked) is refused with one line naming the file and the key; enjoy never creates the marker."""
    marker = tmp_path / "marker"
    if file == "config.yml":
        crafted = hidden_ordereddict(key, {"normalize": MARKER_EXPR.format(marker=str(marker))})
    elif file == "args.yml":
        visible = [["algo", "dqn"], ["env", ENV_ID], ["env_kwargs", None], ["seed", 0]]
        crafted = hidden_ordereddict(key, {"env_kwargs": {"video_folder": str(marker)}}, visible)
    else:
        crafted = hidden_ordereddict(key, {"video_folder": str(marker)}, [])
    repo_id = f"mallory/hidden-{key}-{file.replace('.', '-')}"
    publish(hub, repo_id, {**pushed_files, file: crafted})
    downloads = tmp_path / "dl"
    try:
        pull_from_hub(repo_id, downloads, cache_dir=tmp_path / "c")
    except HubError as e:
        message = str(e)
        assert "\n" not in message and file in message and repr(key) in message
    else:  # not refused: enjoy reads the file written, which must not carry the payload
        enjoy(downloads)
        written = (downloads / "dqn" / f"{ENV_NAME}_1" / ENV_NAME / file).read_text()
        assert key not in written and str(marker) not in written
    finally:
        assert not marker.exists()


def same_data(a, b) -> bool:
    """Equal, with the same types all the way down and the same key order (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


RICH_CONFIG = b"""!!python/object/apply:collections.OrderedDict
- - - batch_size
    - 8
  - - env_kwargs
    - use_minimal_action_set: false
  - - frame_stack
    - 4
  - - learning_rate
    - 1.0e-4
  - - n_timesteps
    - 1e6
  - - policy
    - CnnPolicy
  - - policy_kwargs
    - "dict(features_extractor_class=ConvExtractor, net_arch=[])"
  - - train_freq
    - !!python/tuple [4, step]
  - - nested
    - !!python/object/apply:collections.OrderedDict
      args: [[[a, yes], [b, .nan], [c, ~], [1, '1'], [d, 2001-12-14]]]
"""


def test_pulled_yaml_is_what_was_checked(hub, pushed_files, tmp_path):
    """Every YAML file pull writes is sb3_gap's serialization of what it checked: yaml.UnsafeLoader (rl_zoo3) reads from
    it exactly sb3_gap's parse of the download (types, key order, tuples, OrderedDicts, NaN), and never its bytes."""
    from sb3_gap.hub import zoo_yaml

    args = yaml.dump(OrderedDict([("algo", "dqn"), ("env", ENV_ID), ("env_kwargs", {"use_minimal_action_set": False}), ("seed", 0)]))
    env_kwargs = b"use_minimal_action_set: false\n"
    publish(hub, "erin/rich-yaml", {**pushed_files, "config.yml": RICH_CONFIG, "args.yml": args.encode(), "env_kwargs.yml": env_kwargs})
    info = pull_from_hub("erin/rich-yaml", tmp_path / "dl", cache_dir=tmp_path / "c")
    params = Path(info.log_path) / ENV_NAME
    for name in ("config.yml", "args.yml", "env_kwargs.yml"):
        checked = zoo_yaml.load_zoo_yaml(info.files[name])
        with open(params / name) as f:
            as_the_zoo_reads_it = yaml.load(f, Loader=yaml.UnsafeLoader)  # noqa: S506 - what rl_zoo3 does
        assert same_data(as_the_zoo_reads_it, checked), name
        assert same_data(zoo_yaml.load_zoo_yaml(params / name), checked), name
    assert (params / "config.yml").read_bytes() != RICH_CONFIG  # re-written, not copied
    assert isinstance(zoo_yaml.load_zoo_yaml(params / "config.yml"), OrderedDict)


@pytest.mark.parametrize("file", ["config.yml", "args.yml", "env_kwargs.yml"])
@pytest.mark.parametrize(
    "text, named",
    [
        ("!!python/object/apply:collections.OrderedDict\nargs: [[[policy, CnnPolicy]]]\nkwds: {normalize: 'True'}\n", "'kwds'"),
        ("!!python/object/apply:collections.OrderedDict\nargs: [[[policy, CnnPolicy]]]\ndictitems: {normalize: 'True'}\n", "'dictitems'"),
        ("!!python/object/apply:collections.OrderedDict\nargs: [[[policy, CnnPolicy]]]\nstate: {normalize: 'True'}\n", "'state'"),
        ("!!python/object/apply:collections.OrderedDict\nargs: [[[policy, CnnPolicy]]]\nlistitems: [[normalize, 'True']]\n", "'listitems'"),
        ("!!python/object/apply:collections.OrderedDict\n- [[policy, CnnPolicy]]\n- [[normalize, 'True']]\n", "args"),
        ("!!python/object/apply:collections.OrderedDict\n- [policy, ab]\n", "args"),
        ("a: !!python/object/apply:collections.OrderedDict\n  args: [[[x, 1]]]\n  kwds: {y: 2}\n", "'kwds'"),
        ("!!python/object/apply:builtins.dict\nargs: [[[policy, CnnPolicy]]]\n", "python/object/apply:builtins.dict"),
        ("!!python/object/new:collections.OrderedDict\nargs: [[[policy, CnnPolicy]]]\n", "python/object/new:collections.OrderedDict"),
        ("policy: !!python/name:os.system\n", "python/name:os.system"),
        ("policy: !!python/str CnnPolicy\n", "python/str"),
    ],
    ids=["kwds", "dictitems", "state", "listitems", "two-args", "string-pair", "nested-kwds", "apply-dict", "object-new", "name", "python-str"],
)
def test_zoo_yaml_refuses_what_unsafe_loader_reads_otherwise(tmp_path, file, text, named):
    """Each form yaml.UnsafeLoader reads differently from (or beyond) plain data plus the Zoo's OrderedDict `args` pairs and
    tuples is refused, in any of the Zoo's files, with one line naming the file and the key or tag."""
    from sb3_gap.hub import zoo_yaml

    path = tmp_path / file
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        zoo_yaml.load_zoo_yaml(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(file) and named in message


def cached_files(cache: Path, name: str) -> list[Path]:
    return [p for p in cache.rglob(name)] if cache.exists() else []


@pytest.mark.parametrize("file", ["config.yml", "sb3_gap.json", "train_eval_metrics.zip"])
def test_pull_refuses_oversized_files_before_downloading(hub, pushed_files, tmp_path, monkeypatch, file):
    """A file the Hub lists as larger than its cap (Zoo YAML, sb3_gap.json, the metrics zip) is refused from the
    repository's file listing: never fetched, nothing of it in the cache, no run folder."""
    from sb3_gap.hub import common, zoo_yaml

    if file == "train_eval_metrics.zip":
        monkeypatch.setattr(common, "MAX_METRICS_BYTES", len(pushed_files[file]) - 1)  # the cap is read when pulling
        data = pushed_files[file]
    else:
        cap = zoo_yaml.MAX_YAML_BYTES if file == "config.yml" else safe.MAX_CONFIG_BYTES
        data = b"#" * (cap + 1)
    repo_id = f"mallory/oversized-{file.replace('.', '-').replace('_', '-')}"
    publish(hub, repo_id, {**pushed_files, file: data})
    n_requests = len(hub.requests)
    with pytest.raises(HubError, match=rf"{file} has {len(data):,} bytes, more than the .* refused before downloading it"):
        pull_from_hub(repo_id, tmp_path / "dl", cache_dir=tmp_path / "c")
    fetched = [path for method, path in hub.requests[n_requests:] if method == "GET" and path.endswith(f"/{file}")]
    assert fetched == [] and cached_files(tmp_path / "c", file) == []
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def test_refused_download_leaves_the_cache(hub, pushed_files, tmp_path):
    """A file that is downloaded and then refused (here a config.yml hiding dictitems) is removed from the cache."""
    publish(hub, "mallory/refused-cache", {**pushed_files, "config.yml": hidden_ordereddict("dictitems", {"normalize": "True"})})
    with pytest.raises(HubError, match="dictitems"):
        pull_from_hub("mallory/refused-cache", tmp_path / "dl", cache_dir=tmp_path / "c")
    assert cached_files(tmp_path / "c", "config.yml") == [] and cached_files(tmp_path / "c", "sb3_gap.json") == []


def test_read_config_refuses_oversized_file_unread(tmp_path):
    """sb3_gap.json above safe.MAX_CONFIG_BYTES is refused from its size, before it is read."""
    path = tmp_path / safe.CONFIG_FILE
    path.write_bytes(b" " * safe.MAX_CONFIG_BYTES + b"{}")
    with pytest.raises(ValueError, match="MAX_CONFIG_BYTES"):
        safe.read_config(path)


@pytest.mark.parametrize(
    "wrapper, kwargs, named",
    [
        ("stable_baselines3.common.atari_wrappers.NoopResetEnv", {"noop_max": 10**9}, "noop_max"),
        ("stable_baselines3.common.atari_wrappers.AtariWrapper", {"frame_skip": 10**6}, "frame_skip"),
        ("gymnasium.wrappers.AtariPreprocessing", {"screen_size": 100_000}, "screen_size"),
        ("gymnasium.wrappers.ResizeObservation", {"shape": [100_000, 100_000]}, "shape"),
        ("rl_zoo3.wrappers.YAMLCompatResizeObservation", {"shape": [100_000, 100_000]}, "shape"),
        ("stable_baselines3.common.atari_wrappers.WarpFrame", {"width": 100_000}, "width"),
        ("rl_zoo3.wrappers.HistoryWrapper", {"horizon": 10**7}, "horizon"),
        ("gymnasium.wrappers.DelayObservation", {"delay": 10**7}, "delay"),
        ("gymnasium.wrappers.MaxAndSkipObservation", {"skip": 10**6}, "skip"),
        ("gymnasium.wrappers.DiscretizeObservation", {"bins": 10**6}, "not an allowed class"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." not in v else None,
)
def test_zoo_config_bounds_wrapper_arguments_that_size_allocations(wrapper, kwargs, named):
    """Allow-listed wrappers' arguments that size an allocation or a loop are bounded (one line naming the argument);
    their usual values pass."""
    from sb3_gap.hub import zoo_yaml

    with pytest.raises(ValueError, match=named) as e:
        zoo_yaml.check_zoo_config({"env_wrapper": [{wrapper: kwargs}]})
    assert "\n" not in str(e.value)
    zoo_yaml.check_zoo_config({"env_wrapper": [{"stable_baselines3.common.atari_wrappers.AtariWrapper": {"noop_max": 30, "screen_size": 84}}]})
    zoo_yaml.check_zoo_config({"env_wrapper": [{"gymnasium.wrappers.ResizeObservation": {"shape": [84, 84]}}, "sb3_gap.envs.minatar.MinAtarImage"]})
    for table in (zoo_yaml.WRAPPER_ARG_BOUNDS, zoo_yaml.WRAPPER_IMAGE_ARGS):  # every bounded class is allow-listed
        assert set(table) <= set(zoo_yaml.allowed_classes("env_wrapper"))


@pytest.mark.parametrize("attr, value", [("eval_epsilon", 5), ("exploration_rate", 7), ("priority_eps", 0.0), ("gamma", -1.0)])
def test_load_from_hub_refuses_out_of_range_hyperparameters(hub, tmp_path, attr, value):
    """Values read from a downloaded sb3_gap.json pass the constructor's checks: an eval_epsilon or exploration_rate that
    is not a probability, or a priority_eps of 0, is refused in one line naming it."""
    model = Rainbow("CnnPolicy", ENV_ID, buffer_size=64, batch_size=8, policy_kwargs=sb3_gap.policy_kwargs(encoder="minatar", bottleneck="gap"))
    safe.save_safe(model, tmp_path, env_id=ENV_ID)
    config = json.loads((tmp_path / safe.CONFIG_FILE).read_text())
    load_from_hub_ok = dict(config)
    publish(
        hub,
        "erin/rainbow-ok",
        {safe.CONFIG_FILE: json.dumps(load_from_hub_ok).encode(), safe.WEIGHTS_FILE: (tmp_path / safe.WEIGHTS_FILE).read_bytes()},
    )
    assert type(load_from_hub("erin/rainbow-ok", cache_dir=tmp_path / "c")) is Rainbow
    config["model_attrs"][attr] = value
    repo_id = f"mallory/rainbow-{attr.replace('_', '-')}"
    publish(hub, repo_id, {safe.CONFIG_FILE: json.dumps(config).encode(), safe.WEIGHTS_FILE: (tmp_path / safe.WEIGHTS_FILE).read_bytes()})
    with pytest.raises(ValueError, match=rf"{attr} must be") as e:
        load_from_hub(repo_id, cache_dir=tmp_path / "c")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=rf"{attr} must be"):
        load_from_hub("erin/rainbow-ok", cache_dir=tmp_path / "c", **{attr: value})  # the same bound for an override


def test_rainbow_load_checks_overrides_like_the_constructor(tmp_path):
    """Rainbow.load refuses the overrides its constructor refuses (eval_epsilon=7.0, priority_eps=0.0, an exploration_rate
    above 1) and keeps accepting the ones the Zoo's enjoy passes (buffer_size=1)."""
    model = Rainbow("CnnPolicy", ENV_ID, buffer_size=64, batch_size=8, policy_kwargs=sb3_gap.policy_kwargs(encoder="minatar", bottleneck="gap"))
    model.save(tmp_path / "rainbow")
    for kwargs, name in (
        ({"eval_epsilon": 7.0}, "eval_epsilon"),
        ({"priority_eps": 0.0}, "priority_eps"),
        ({"exploration_rate": 7}, "exploration_rate"),
    ):
        with pytest.raises(ValueError, match=rf"{name} must be"):
            Rainbow.load(tmp_path / "rainbow.zip", **kwargs)
    with pytest.raises(ValueError, match="eval_epsilon must be"):
        Rainbow("CnnPolicy", ENV_ID, eval_epsilon=7.0)  # the constructor's own refusal, for comparison
    assert Rainbow.load(tmp_path / "rainbow.zip", buffer_size=1, eval_epsilon=0.001).eval_epsilon == 0.001


# ------------------------------------------------------------------------------------------------
# push: the run's files are read as data, and a missing run is one line
# ------------------------------------------------------------------------------------------------


def test_push_refuses_python_tags_in_args_yml_without_running_them(hub_env, tmp_path, capsys):
    marker = tmp_path / "pwned"
    logs = tmp_path / "logs"
    params = logs / "dqn" / f"{ENV_NAME}_1" / ENV_NAME
    params.mkdir(parents=True)
    tiny_dqn().save(params.parent / ENV_NAME)
    with open(params / "config.yml", "w") as f:
        yaml.dump(OrderedDict([("policy", "CnnPolicy"), ("train_freq", (4, "step"))]), f)  # python tags the Zoo writes: read
    (params / "args.yml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    line = one_line_error(capsys, ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(logs), "--repo-id", "alice/x",
                                   "--n-eval-episodes", "1", "--no-video"], "push")  # fmt: skip
    assert "args.yml holds YAML that is not plain data" in line
    assert not marker.exists()


def test_push_reads_zoo_hyperparams_without_the_unsafe_yaml_loader(tmp_path):
    """The run's config.yml (an OrderedDict with tuples, as rl_zoo3 dumps it) is read with sb3_gap's safe loader into the
    hyperparameters rl_zoo3's enjoy would use (normalize in test mode)."""
    from sb3_gap.hub.push import _saved_hyperparams

    with open(tmp_path / "config.yml", "w") as f:
        yaml.dump(OrderedDict([("normalize", "dict(norm_obs=True, norm_reward=True)"), ("frame_stack", 4), ("t", (1, 2))]), f)
    hyper, stats = _saved_hyperparams(str(tmp_path))
    assert stats == str(tmp_path) and hyper["t"] == (1, 2) and hyper["frame_stack"] == 4
    assert hyper["normalize_kwargs"] == {"norm_obs": True, "norm_reward": False}  # test mode, as rl_zoo3's


def test_cli_push_without_a_zoo_run_is_one_line(hub_env, tmp_path, capsys):
    line = one_line_error(
        capsys, ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path / "nothing"), "--repo-id", "a/b", "--no-video"], "push"
    )
    assert "No Zoo run" in line
