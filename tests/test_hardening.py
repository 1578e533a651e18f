"""Hardening (issue 13; issue 16 items 4 and 6): downloads cannot steer the machine, secrets never print,
and every bad input gets a one-line error naming the file, value or setting at fault.

Each test names the numbered item it covers. Hub tests drive the REAL huggingface_hub client against
the loopback fake Hub of ``tests/fake_hub.py`` (no network); models are tiny and never trained long.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import gymnasium as gym
import numpy as np
import optuna
import pytest
import torch as th
import yaml
from fake_hub import TEST_TOKEN, FakeHub  # tests/ is on sys.path (pytest's rootdir-relative import)
from gymnasium import spaces
from huggingface_hub import CommitOperationAdd, HfApi
from stable_baselines3 import DQN

from sb3_gap import ConvExtractor, policy_kwargs
from sb3_gap.cli import main as cli_main
from sb3_gap.hub import HubError, load_from_hub, pull_from_hub, safe, zoo_yaml
from sb3_gap.rainbow import Rainbow
from sb3_gap.sweep import SweepSpec, open_study
from sb3_gap.sweep import database as sweep_database
from sb3_gap.sweep import spec as sweep_spec
from sb3_gap.sweep import workers as sweep_workers

TOKEN = TEST_TOKEN
ENV_ID = "MinAtar/Breakout-v1"
ENV_NAME = "MinAtar-Breakout-v1"
SECRET = "hunter2secret"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def tiny_dqn(width_scale: int = 1, env_id: str = ENV_ID) -> DQN:
    """An untrained DQN with sb3_gap's extractor (built, never trained: fast)."""
    return DQN("CnnPolicy", gym.make(env_id), buffer_size=64, batch_size=8, learning_starts=0,
               policy_kwargs=policy_kwargs(encoder="impala", bottleneck="gap", width_scale=width_scale), seed=0)  # fmt: skip


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
    return ["sweep", "--envs", ENV_ID, "--algos", "qrdqn", "--bottlenecks", "gap", "--steps", "50", "--eval-freq", "50",
            "--eval-episodes", "1", "--final-evals", "1", "--no-progress", "--no-save-models",
            "--out", str(tmp_path / "runs"), *extra]  # fmt: skip


def make_sqlite(path: Path, rows: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * rows)
    conn.commit()
    conn.close()


# --- the fake Hub ---------------------------------------------------------------------------------


# ``hub`` and ``hub_env`` (a fake Hub per module, loopback-only name resolution) are in conftest.py.


def publish(hub: FakeHub, repo_id: str, files: dict[str, bytes]) -> None:
    """Commit ``files`` to ``repo_id`` on the fake Hub (created if needed), as any uploader could."""
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    api.create_commit(repo_id, operations=[CommitOperationAdd(k, v) for k, v in files.items()], commit_message="upload")


def safe_files(model, tmp: Path, config_yml: dict | None = None) -> dict[str, bytes]:
    """The pickle-free files of ``model`` (as sb3_gap pushes them) plus a ``config.yml``."""
    tmp.mkdir(parents=True, exist_ok=True)
    safe.save_safe(model, tmp, ENV_ID)
    files = {name: (tmp / name).read_bytes() for name in (safe.CONFIG_FILE, safe.WEIGHTS_FILE)}
    files["config.yml"] = yaml.safe_dump(config_yml if config_yml is not None else {"policy": "CnnPolicy"}).encode()
    return files


@pytest.fixture(scope="module")
def dqn_files(tmp_path_factory):
    model = tiny_dqn()
    return model, safe_files(model, tmp_path_factory.mktemp("safe"))


# ------------------------------------------------------------------------------------------------
# 1. --allow-pickle only allows the pickled model zip; config strings always pass the allow-list
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_item01_allow_pickle_never_lifts_the_config_checks(hub_env, dqn_files, tmp_path, allow_pickle):
    model, files = dqn_files
    marker = tmp_path / "pwned"
    repo_id = f"mallory/evil-normalize-{int(allow_pickle)}"
    evil = {"policy": "CnnPolicy", "normalize": f"__import__('os').system('touch {marker}')"}
    publish(hub_env, repo_id, {**files, "config.yml": yaml.safe_dump(evil).encode()})
    downloads = tmp_path / "dl"
    with pytest.raises(HubError, match=r"normalize .* calls something other than dict\(\).*--allow-pickle does not lift this"):
        pull_from_hub(repo_id, downloads, allow_pickle=allow_pickle)
    assert not marker.exists() and not (downloads / "dqn").exists()

    # A zip-only repository (the pickle path, opted in) gets the same check on its config.
    buf = io.BytesIO()
    model.save(buf)
    zip_repo = f"mallory/evil-zip-{int(allow_pickle)}"
    publish(hub_env, zip_repo, {f"dqn-{ENV_NAME}.zip": buf.getvalue(), "config.yml": yaml.safe_dump(evil).encode()})
    with pytest.raises(HubError, match="refused for downloaded configs"):
        pull_from_hub(zip_repo, downloads, algo="dqn", env_id=ENV_ID, allow_pickle=True)
    assert not marker.exists() and not (downloads / "dqn").exists()


def test_item01_cli_pull_with_allow_pickle_is_refused_in_one_line(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "mallory/evil-cli", {**files, "config.yml": b"env_wrapper: builtins.exec\n"})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/evil-cli", "-f", str(tmp_path / "dl"), "--allow-pickle"], "pull")
    assert "builtins.exec" in line and "not an allowed class" in line


def test_item01_allow_pickle_covers_pickled_vecnormalize_on_the_safetensors_path(hub_env, dqn_files, tmp_path):
    _, files = dqn_files
    publish(hub_env, "bob/normalized", {**files, "config.yml": b"normalize: true\npolicy: CnnPolicy\n", "vec_normalize.pkl": b"stats"})
    with pytest.raises(HubError, match="needs VecNormalize statistics"):
        pull_from_hub("bob/normalized", tmp_path / "dl")
    info = pull_from_hub("bob/normalized", tmp_path / "dl", allow_pickle=True)
    assert info.path == "safetensors" and Path(info.log_path, ENV_NAME, "vecnormalize.pkl").read_bytes() == b"stats"


# ------------------------------------------------------------------------------------------------
# 2. a downloaded config cannot steer the machine: attributes, shapes, wrappers with paths
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_config(tmp_path):
    model = tiny_dqn()
    safe.save_safe(model, tmp_path, ENV_ID)
    return json.loads((tmp_path / safe.CONFIG_FILE).read_text()), tmp_path / safe.WEIGHTS_FILE


def test_item02_config_cannot_set_local_or_unlisted_attributes(saved_config):
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


def test_item02_huge_observation_shape_is_refused_before_allocating(saved_config, monkeypatch):
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
def test_item02_shapes_are_bounded_by_the_weights(saved_config, monkeypatch, edit, words):
    config, weights = saved_config
    edit(config)
    monkeypatch.setattr(DQN, "_setup_model", lambda self: pytest.fail("the model was allocated"))
    with pytest.raises(ValueError) as info:
        safe.build_from_config(config, weights, device="cpu")
    for word in words:
        assert word in str(info.value), str(info.value)


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
def test_item02_wrappers_with_path_arguments_are_untrusted(entry):
    with pytest.raises(ValueError, match="refused for downloaded configs"):
        zoo_yaml.check_zoo_config(entry)


def test_item02_plain_trusted_wrappers_still_pass():
    zoo_yaml.check_zoo_config({"env_wrapper": [{"gymnasium.wrappers.ClipReward": {"min_reward": -1.0, "max_reward": 1.0}}],
                           "policy_kwargs": "dict(activation_fn=nn.ReLU, net_arch=[64])", "normalize": "dict(norm_obs=True)"})  # fmt: skip


# ------------------------------------------------------------------------------------------------
# 3. storage URLs never print a password
# ------------------------------------------------------------------------------------------------

SECRET_URLS = [
    f"postgresql://sweeper:{SECRET}@127.0.0.1:9/sweeps",
    f"postgresql://sweeper:p@{SECRET}@127.0.0.1:9/sweeps",  # '@' inside the password, not escaped
    f"postgresql://sweeper:p%40{SECRET}@127.0.0.1:9/sweeps",
    f"postgresql://127.0.0.1:9/sweeps?password={SECRET}",
    f"mysql+pymysql://u@127.0.0.1:9/db?ssl=1&sslpassword={SECRET}",
    f"sqlite:///runs/x.db?password={SECRET}",
    f"postgresql://sweeper:{SECRET}@127.0.0.1:notaport/sweeps",  # does not parse
    f"postgres:/sweeper:{SECRET}@127.0.0.1:9/sweeps",  # does not parse
    f"sweeper:{SECRET}@127.0.0.1",  # does not parse
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_item03_display_url_masks_every_form_of_password(url):
    from sb3_gap.sweep.database import display_url, scrub_secrets

    shown = display_url(url)
    assert SECRET not in shown and "***" in shown
    assert SECRET not in scrub_secrets(f"could not open {url} (connection refused)", url)
    assert scrub_secrets(f"password 'x{SECRET}' rejected", f"postgresql://u:x{SECRET}@127.0.0.1:9/db") == "password '***' rejected"


@pytest.mark.parametrize("url", [SECRET_URLS[1], SECRET_URLS[3], SECRET_URLS[6], SECRET_URLS[7]])
def test_item03_cli_errors_never_show_the_password(tmp_path, capsys, url):
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", url), "sweep")
    assert SECRET not in line
    line = one_line_error(capsys, ["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert SECRET not in line


@pytest.mark.parametrize("password", ["Qol:Sl/x9q", "pQ@sZ@wrd42", "50%offQZ!", "itQ's:mZn/oKk", "Zab/cdQ:efW@ghX%ijY'klV"])
def test_storage_url_errors_never_quote_any_part_of_the_password(tmp_path, capsys, password):
    """A password holding raw @ : / % ' is refused (or masked) without any piece of it in the message."""
    url = f"postgresql://sweeper:{password}@127.0.0.1:9/sweeps"
    pieces = [piece for piece in re.split(r"[@:/%']", password) if len(piece) >= 2 and piece.lower() != piece]  # distinctive ones
    for argv, command in ((tiny_sweep_args(tmp_path, "--storage", url), "sweep"),
                          (["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")], "report")):  # fmt: skip
        line = one_line_error(capsys, argv, command)
        assert not [piece for piece in pieces if piece in line], line


def test_item03_summary_never_shows_the_password():
    import pandas as pd

    from sb3_gap.sweep.report import METRICS, markdown_summary

    df = pd.DataFrame([dict(env=ENV_ID, seed=0, state="COMPLETE", score=1.0, normalization="raw return", config="c", settings=None)])
    agg = pd.DataFrame([dict(config="c", runs_per_task=1, tasks=1, complete=1, cells=1, wall_h=0.1, params_bottleneck=1, params_effective_psi=1, missing="",
                             **{k: v for m in METRICS for k, v in ((m, 1.0), (f"{m} low", 0.5), (f"{m} high", 1.5))})])  # fmt: skip
    text = markdown_summary(df, agg, [(url, "s") for url in SECRET_URLS], [])
    assert SECRET not in text and "***" in text


# ------------------------------------------------------------------------------------------------
# 4. --study (or a grid value) cannot put run folders outside --out
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("study", ["../../x", "..", "a/b", "/abs", "a\\b"])
def test_item04_study_names_that_leave_out_are_refused(tmp_path, capsys, study):
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--study", study, "--storage", f"sqlite:///{tmp_path}/s.db"), "sweep")
    assert repr(study) in line and "plain folder name" in line
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "runs").exists()


def test_item04_grid_values_that_leave_out_are_refused(tmp_path):
    spec = SweepSpec(envs=[ENV_ID], algos=["rainbow"], bottlenecks=["gap"], hyperparams={"loss": ["huber", "../../../evil"]},
                     storage=f"sqlite:///{tmp_path}/s.db", out_dir=str(tmp_path / "runs"))  # fmt: skip
    with pytest.raises(ValueError, match=r"Run folder .*evil.* would not be a folder of"):
        spec.validate()


# ------------------------------------------------------------------------------------------------
# 5. push reads the run's args.yml with a safe loader
# ------------------------------------------------------------------------------------------------


def test_item05_push_never_runs_python_tags_from_args_yml(hub_env, tmp_path, capsys):
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


def test_item05_zoo_hyperparams_read_without_unsafe_loader(tmp_path):
    from sb3_gap.hub.push import _saved_hyperparams

    with open(tmp_path / "config.yml", "w") as f:
        yaml.dump(OrderedDict([("normalize", "dict(norm_obs=True, norm_reward=True)"), ("frame_stack", 4), ("t", (1, 2))]), f)
    hyper, stats = _saved_hyperparams(str(tmp_path))
    assert stats == str(tmp_path) and hyper["t"] == (1, 2) and hyper["frame_stack"] == 4
    assert hyper["normalize_kwargs"] == {"norm_obs": True, "norm_reward": False}  # test mode, as rl_zoo3's


# ------------------------------------------------------------------------------------------------
# 6. / 7. / 10. Rainbow: replay settings, architecture overrides, buffer smaller than a batch
# ------------------------------------------------------------------------------------------------

SMALL = dict(buffer_size=500, learning_starts=10_000, batch_size=16, policy_kwargs=dict(net_arch=[8]), seed=0)


@pytest.mark.filterwarnings("ignore:RainbowReplayBuffer. an observation does not continue")
def test_item06_replay_buffer_with_other_settings_is_refused(tmp_path):
    source = Rainbow("MlpPolicy", "CartPole-v1", n_steps=3, gamma=0.99, prioritized_replay=True, **SMALL)
    source.learn(60)
    source.save_replay_buffer(tmp_path / "rb")
    other = Rainbow("MlpPolicy", "CartPole-v1", n_steps=1, gamma=0.5, prioritized_replay=False, **SMALL)
    own = other.replay_buffer
    with pytest.raises(ValueError) as info:
        other.load_replay_buffer(tmp_path / "rb")
    for words in ("n_steps: model 1, buffer 3", "gamma: model 0.5, buffer 0.99", "prioritized_replay: model False, buffer True"):
        assert words in str(info.value)
    assert other.replay_buffer is own  # the model keeps its own buffer
    same = Rainbow("MlpPolicy", "CartPole-v1", n_steps=3, gamma=0.99, prioritized_replay=True, **SMALL)
    same.load_replay_buffer(tmp_path / "rb")
    assert same.replay_buffer.pos == source.replay_buffer.pos == 60


def test_item07_load_refuses_architecture_overrides(tmp_path):
    model = Rainbow("MlpPolicy", "CartPole-v1", n_atoms=51, **SMALL)
    model.save(tmp_path / "m")
    for override in (dict(n_atoms=21), dict(v_max=5.0), dict(dueling=True), dict(custom_objects={"noisy": True})):
        with pytest.raises(ValueError, match=r"Rainbow.load cannot override \['(n_atoms|v_max|dueling|noisy)'\]"):
            Rainbow.load(tmp_path / "m", **override)
    loaded = Rainbow.load(tmp_path / "m", buffer_size=100, learning_rate=1e-3)  # other overrides work as in SB3
    assert loaded.n_atoms == loaded.q_net.n_atoms == 51 and loaded.buffer_size == 100
    config, _ = safe.model_to_plain(model)
    safe.save_safe(model, tmp_path)
    with pytest.raises(ValueError, match=r"\['n_atoms'\] shape Rainbow's network"):
        safe.build_from_config(config, tmp_path / safe.WEIGHTS_FILE, device="cpu", n_atoms=21)


def test_item10_buffer_smaller_than_a_batch_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"buffer_size must be an integer >= batch_size .* buffer_size=10, batch_size=32"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=10, batch_size=32)
    model = Rainbow("MlpPolicy", "CartPole-v1", **SMALL)
    model.save(tmp_path / "m")
    loaded = Rainbow.load(tmp_path / "m", buffer_size=8, env=gym.make("CartPole-v1"))  # fine to act (the Zoo's enjoy does this)
    with pytest.raises(ValueError, match=r"buffer_size=8 is smaller than batch_size=16"):
        loaded.learn(10)
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--set", "buffer_size=10", "batch_size=32",
                                                  "--storage", f"sqlite:///{tmp_path}/s.db"), "sweep")  # fmt: skip
    assert "buffer_size=10 is smaller than batch_size=32" in line and not (tmp_path / "s.db").exists()


# ------------------------------------------------------------------------------------------------
# 8. / 11. / 12. storages: missing, locked, corrupt, truncated; other one-line CLI errors
# ------------------------------------------------------------------------------------------------


def test_item08_report_never_creates_a_mistyped_sqlite_file(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{missing}", "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert f"SQLite storage {missing} does not exist" in line
    assert not missing.exists()
    from sb3_gap.sweep.report import build_report

    with pytest.raises(ValueError, match="does not exist"):
        build_report([(f"sqlite:///{missing}", "s")], tmp_path / "r")
    assert not missing.exists()


def test_item11_locked_sqlite_is_reported_within_seconds_with_its_holder(tmp_path, capsys, monkeypatch):
    db = tmp_path / "locked.db"
    make_sqlite(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n", str(db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(sweep_database, "SQLITE_PROBE_TIMEOUT_S", 0.5)
        monkeypatch.setattr(sweep_database, "SQLITE_LOCK_WAIT_S", 1.5)
        start = time.perf_counter()
        with pytest.raises(SystemExit) as info:
            cli_main(tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}"))
        elapsed = time.perf_counter() - start
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value.code)
    assert message.startswith("sb3-gap sweep: error: SQLite storage") and "is locked by" in message
    assert f"PID {holder.pid}" in message and "gave up after" in message
    assert "retry 1" in err and f"PID {holder.pid}" in err  # retried visibly
    assert elapsed < 30


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


def _truncated(path: Path) -> None:
    make_sqlite(path, rows=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, words", [(_corrupt, "not an SQLite database"), (_truncated, "truncated")])
@pytest.mark.parametrize("command", ["sweep", "report"])
def test_item12_corrupt_or_truncated_sqlite_is_one_line(tmp_path, capsys, damage, words, command):
    db = tmp_path / "bad.db"
    damage(db)
    before = db.read_bytes()
    if command == "sweep":
        argv = tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}")
    else:
        argv = ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r")]
    line = one_line_error(capsys, argv, command)
    assert str(db) in line and words in line
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--workers", "0"], ["--workers", "'0'", "positive integer", "'auto'"]),
        (["--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/db"], ["No database driver", "pip install"]),
        (["--envs", "MinAtar/Breakout-v9"], ["Unknown env id 'MinAtar/Breakout-v9'", "MinAtar/Breakout-v1"]),
        (["--set", "learning_rate=abc"], ["learning_rate='abc'", "lin_<float>"]),
        (["--set", "target_update_interval=2.5"], ["target_update_interval=2.5", "must be an integer"]),
    ],
)
def test_item12_sweep_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails, as without the driver (the test extra installs it)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    args = tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "t")
    line = one_line_error(capsys, args + extra, "sweep")
    for word in words:
        assert word in line, line
    assert SECRET not in line


def test_item12_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_error(capsys, [*tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db"), "--out", str(blocker)], "sweep")
    assert f"--out {blocker}" in line and "cannot write run folders" in line
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "t", "--out", str(blocker / "r")], "report")
    assert "does not exist" in line or str(blocker) in line


@pytest.mark.parametrize("content, words", [(b"{not json", "is not JSON"), (b"[1, 2]", "another shape"), (None, "does not exist")])
def test_item12_report_reference_that_is_not_json_names_the_file(tmp_path, capsys, content, words):
    db = tmp_path / "s.db"
    open_study(SweepSpec(envs=[ENV_ID], storage=f"sqlite:///{db}", study="s", out_dir=str(tmp_path / "runs")))
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_bytes(content)
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r"),
                                   "--reference", str(ref)], "report")  # fmt: skip
    assert f"--reference {ref}" in line and words in line


def test_item12_pull_corrupt_or_mismatched_safetensors_is_one_line(hub_env, dqn_files, tmp_path, capsys):
    model, files = dqn_files
    publish(hub_env, "eve/corrupt-weights", {**files, safe.WEIGHTS_FILE: files[safe.WEIGHTS_FILE][:200]})
    line = one_line_error(capsys, ["pull", "--repo-id", "eve/corrupt-weights", "-f", str(tmp_path / "dl")], "pull")
    assert "model.safetensors is not a valid safetensors file" in line
    wide = safe_files(tiny_dqn(width_scale=2), tmp_path / "x2")
    publish(hub_env, "eve/x2-under-x1", {**files, safe.WEIGHTS_FILE: wide[safe.WEIGHTS_FILE]})  # a x2 checkpoint, a x1 config
    line = one_line_error(capsys, ["pull", "--repo-id", "eve/x2-under-x1", "-f", str(tmp_path / "dl")], "pull")
    assert "1024" in line and "512" in line and "belong to different models" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def test_item12_gradcam_missing_model_and_unknown_env_are_one_line(tmp_path, capsys):
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "nope.zip"), "--algo", "dqn", "--env", ENV_ID], "gradcam")
    assert f"model file '{tmp_path / 'nope.zip'}' does not exist" in line and ".zip.zip" not in line
    tiny_dqn().save(tmp_path / "m.zip")
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "m.zip"), "--algo", "dqn", "--env", "MinAtar/Breakout-v9"], "gradcam")
    assert "Unknown env id 'MinAtar/Breakout-v9'" in line and "MinAtar/Breakout-v1" in line


def test_item12_push_missing_run_is_one_line(hub_env, tmp_path, capsys):
    line = one_line_error(
        capsys, ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path / "nothing"), "--repo-id", "a/b", "--no-video"], "push"
    )
    assert "No Zoo run" in line


# ------------------------------------------------------------------------------------------------
# 9. Grad-CAM checks the env against the model
# ------------------------------------------------------------------------------------------------


def test_item09_gradcam_refuses_another_game(tmp_path, capsys):
    tiny_dqn().save(tmp_path / "breakout.zip")
    out = tmp_path / "cam.png"
    line = one_line_error(capsys, ["gradcam", str(tmp_path / "breakout.zip"), "--algo", "dqn", "--env", "MinAtar/Asterix-v1",
                                   "--steps", "1", "--out", str(out)], "gradcam")  # fmt: skip
    assert "Discrete(5)" in line and "Discrete(3)" in line and "trained on another env" in line
    assert not out.exists()
    # A sweep run folder records its env: --env must agree with it, and defaults to it.
    run = tmp_path / "run"
    run.mkdir()
    tiny_dqn().save(run / "model.zip")
    (run / "settings.json").write_text(json.dumps({"env": ENV_ID, "env_settings": {}}))
    line = one_line_error(capsys, ["gradcam", str(run / "model.zip"), "--algo", "dqn", "--env", "MinAtar/Asterix-v1"], "gradcam")
    assert f"was trained on '{ENV_ID}'" in line and "settings.json" in line
    cli_main(["gradcam", str(run / "model.zip"), "--algo", "dqn", "--steps", "1", "--out", str(out)])
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# 13. a bad --set value is refused before any trial and never locks the study
# ------------------------------------------------------------------------------------------------


def test_item13_bad_value_refused_before_the_study_exists(tmp_path, capsys):
    db = tmp_path / "s.db"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}", "--set", "learning_rate=abc"), "sweep")
    assert "learning_rate='abc'" in line
    assert not db.exists() and not (tmp_path / "runs").exists()
    for fixed in ({"learning_rate": float("nan")}, {"batch_size": None}, {"optimize_memory_usage": "yes"}, {"gamma": "0.9x"}):
        with pytest.raises(ValueError, match=list(fixed)[0]):
            SweepSpec(envs=[ENV_ID], fixed=fixed, storage=f"sqlite:///{db}").validate()
    spec = SweepSpec(envs=[ENV_ID], fixed={"buffer_size": 1e4, "learning_rate": "lin_1e-4"}, storage=f"sqlite:///{db}")
    spec.validate()
    assert spec.fixed["buffer_size"] == 10_000 and isinstance(spec.fixed["buffer_size"], int)


def test_item13_settings_that_completed_nothing_never_lock_the_study(tmp_path, capsys):
    def spec(**fixed):
        return SweepSpec(envs=[ENV_ID], fixed=fixed, storage=f"sqlite:///{tmp_path}/s.db", study="t", out_dir=str(tmp_path / "runs"))

    study = open_study(spec(learning_starts=5))  # e.g. a value that made every trial fail
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    corrected = open_study(spec(learning_starts=7))
    assert corrected.user_attrs["training_config"]["fixed"] == {"learning_starts": 7}
    assert "replaced by the given ones" in capsys.readouterr().err
    corrected.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0))
    with pytest.raises(ValueError, match="other training settings"):  # a study with results stays protected
        open_study(spec(learning_starts=9))


# ------------------------------------------------------------------------------------------------
# 14. numbers in spirit, bounds, Dict observations, n_envs
# ------------------------------------------------------------------------------------------------


def test_item14_numpy_numbers_are_numbers():
    pk = policy_kwargs(width_scale=np.int64(2), psi_depth=np.int32(1))
    assert pk["features_extractor_kwargs"]["width_scale"] == 2 and type(pk["features_extractor_kwargs"]["width_scale"]) is int
    json.dumps(pk["features_extractor_kwargs"])
    assert ConvExtractor(spaces.Box(0, 255, (4, 10, 10), np.uint8), width_scale=np.int64(2)).features_dim == 1024
    model = Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, v_min=np.float32(-1), v_max=np.float64(1), n_atoms=np.int64(11))
    assert (model.v_min, model.v_max, model.n_atoms) == (-1.0, 1.0, 11) and type(model.n_atoms) is int
    spec = SweepSpec(envs=[ENV_ID], width_scales=[np.int64(2)], seeds=np.int64(1))
    spec.validate()
    json.dumps(spec.search_space())


@pytest.mark.parametrize("v_min, v_max", [(-np.inf, 10.0), (-10.0, float("inf")), (float("nan"), 1.0)])
def test_item14_infinite_support_is_refused_at_construction(v_min, v_max):
    with pytest.raises(ValueError, match="v_min and v_max must be finite numbers"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=100, v_min=v_min, v_max=v_max)


def test_item14_width_scale_upper_bound_fails_before_allocating(monkeypatch):
    from sb3_gap.extractor import MAX_WIDTH_SCALE

    monkeypatch.setattr(th.nn.Linear, "__init__", lambda *a, **k: pytest.fail("a layer was allocated"))
    for call in (lambda: policy_kwargs(width_scale=MAX_WIDTH_SCALE + 1),
                 lambda: ConvExtractor(spaces.Box(0, 255, (4, 10, 10), np.uint8), width_scale=10**6)):  # fmt: skip
        with pytest.raises(ValueError, match=rf"width_scale must be a positive integer and at most {MAX_WIDTH_SCALE}"):
            call()


def test_item14_dict_observation_error_says_how_to_use_it():
    space = spaces.Dict({"pixels": spaces.Box(0, 255, (3, 64, 64), np.uint8), "state": spaces.Box(-1, 1, (3,))})
    with pytest.raises(ValueError, match=r"image key\(s\) \['pixels'\].*TransformObservation.*obs\['pixels'\].*MultiInputPolicy"):
        ConvExtractor(space)
    with pytest.raises(ValueError, match=r"image key\(s\) \['pixels'\]"):
        Rainbow("MultiInputPolicy", FakeDictEnv(), buffer_size=100, n_steps=1, prioritized_replay=False, policy_kwargs=policy_kwargs())


class FakeDictEnv(gym.Env):
    observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (3, 40, 40), np.uint8), "state": spaces.Box(-1, 1, (3,))})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize("n_envs", [0, -1, 1.5, True])
def test_item14_atari_vec_env_n_envs(n_envs):
    from sb3_gap.envs import make_atari_vec_env

    with pytest.raises(ValueError, match=rf"n_envs must be a positive integer .* got {n_envs!r}"):
        make_atari_vec_env("Pong", n_envs=n_envs)


# ------------------------------------------------------------------------------------------------
# issue 16, item 4: pull accepts our own policy_kwargs(...) strings, safely
# ------------------------------------------------------------------------------------------------


def test_issue16_item4_pull_accepts_our_zoo_policy_kwargs(hub_env, dqn_files, tmp_path):
    model, files = dqn_files
    ours = {"policy": "CnnPolicy", "policy_kwargs": "dict(policy_kwargs(encoder='impala', bottleneck='gap', width_scale=4), "
            "optimizer_kwargs=dict(eps=3.125e-4))", "env_wrapper": [{"gymnasium.wrappers.ClipReward": {"min_reward": -1.0, "max_reward": 1.0}}]}  # fmt: skip
    publish(hub_env, "zoo/ours", {**files, "config.yml": yaml.safe_dump(ours).encode()})
    info = pull_from_hub("zoo/ours", tmp_path / "dl")
    assert info.path == "safetensors" and Path(info.log_path, ENV_NAME, "config.yml").is_file()
    # ...but an allow-listed call with arguments that are not ours is refused, as is any other call.
    for bad in ("policy_kwargs(encoder='resnet')", "dict(policy_kwargs(width_scale=2), x=getattr(dict, 'mro'))"):
        publish(hub_env, "zoo/ours-bad", {**files, "config.yml": yaml.safe_dump({"policy_kwargs": bad}).encode()})
        with pytest.raises(HubError, match="refused for downloaded configs"):
            pull_from_hub("zoo/ours-bad", tmp_path / "dl2")


# ------------------------------------------------------------------------------------------------
# issue 16, item 6: ALE/Pong-v5 and PongNoFrameskip-v4 in sweeps and Grad-CAM (a fresh process knows no ALE id)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_registry():
    """The registry of a fresh process: gymnasium 1.x registers ALE ids only when ale_py is imported."""
    saved = dict(gym.registry)
    for key in [k for k, s in gym.registry.items() if str(s.entry_point).startswith("ale_py")]:
        del gym.registry[key]
    try:
        yield
    finally:
        gym.registry.clear()
        gym.registry.update(saved)


def test_issue16_item6_sweep_accepts_ale_ids(fresh_registry, tmp_path):
    with pytest.raises(gym.error.Error):
        gym.spec("ALE/Pong-v5")  # the fixture bites
    spec = SweepSpec(envs=["ALE/Pong-v5", "PongNoFrameskip-v4"], algos=["rainbow", "qrdqn"], storage=f"sqlite:///{tmp_path}/s.db")
    spec.validate()


def test_issue16_item6_gradcam_accepts_ale_ids(fresh_registry, tmp_path):
    from sb3_contrib import QRDQN

    from sb3_gap.envs.protocols import protocol_for

    venv = protocol_for("ALE/Pong-v5").make_env("ALE/Pong-v5", 1, 0, False)
    QRDQN("CnnPolicy", venv, buffer_size=64, batch_size=8, policy_kwargs=policy_kwargs(encoder="nature", bottleneck="gap"), seed=0).save(
        tmp_path / "m.zip"
    )
    venv.close()
    for key in [k for k, s in dict(gym.registry).items() if str(s.entry_point).startswith("ale_py")]:
        del gym.registry[key]  # building the model registered them: back to a fresh process's registry for the CLI
    out = tmp_path / "cam.png"
    cli_main(["gradcam", str(tmp_path / "m.zip"), "--algo", "qrdqn", "--env", "ALE/Pong-v5", "--steps", "2", "--out", str(out)])
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# issue 16, "also expected by users": idle sweep workers leave within seconds; sweep and Zoo share the env slug
# ------------------------------------------------------------------------------------------------


def test_issue16_idle_worker_leaves_a_finished_grid_within_seconds(tmp_path, monkeypatch):
    """A worker with nothing left to start polls every IDLE_POLL_S (not every 30 s heartbeat) and exits once the
    last running cell, another worker's, completes."""
    spec = SweepSpec(envs=[ENV_ID], algos=["dqn"], bottlenecks=["gap"], storage=f"sqlite:///{tmp_path}/s.db", study="idle",
                     out_dir=str(tmp_path / "runs"))  # fmt: skip
    assert spec.heartbeat_interval == 30
    study = open_study(spec)
    (cell,) = spec.cells()
    study.enqueue_trial(cell)
    other = study.ask()  # another worker's running trial
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        study.tell(other, 1.0)  # the other worker finishes while this one waits

    monkeypatch.setattr(sweep_workers.time, "sleep", sleep)
    assert sweep_workers.run_worker(spec, progress=False, wait=True) == 0  # trained nothing, left the finished grid
    assert slept == [sweep_workers.IDLE_POLL_S] and sweep_workers.IDLE_POLL_S <= 2


def test_issue16_sweep_run_folders_use_the_zoo_env_slug(tmp_path):
    """Sweep run folders are named like rl_zoo3's (logs/<algo>/MinAtar-Breakout-v1_1, tests/test_hub.py's zoo_run);
    a study folder that already holds the earlier slug (MinAtar_Breakout-v1) keeps it."""
    spec = SweepSpec(envs=[ENV_ID, "ALE/Pong-v5"], algos=["dqn"], bottlenecks=["gap"], storage=f"sqlite:///{tmp_path}/s.db",
                     out_dir=str(tmp_path / "runs"), study="st")  # fmt: skip
    spec.validate()
    dirs = {c["env"]: sweep_spec.run_dir_for(spec, c) for c in spec.cells()}
    assert dirs[ENV_ID].parent == tmp_path / "runs" / "st" / ENV_NAME == tmp_path / "runs" / "st" / "MinAtar-Breakout-v1"
    assert dirs["ALE/Pong-v5"].parent.name == "ALE-Pong-v5"
    legacy = tmp_path / "runs" / "st" / "MinAtar_Breakout-v1"
    legacy.mkdir(parents=True)
    spec.validate()
    assert sweep_spec.run_dir_for(spec, spec.cells()[0] if spec.cells()[0]["env"] == ENV_ID else spec.cells()[1]).parent == legacy


def test_issue16_zoo_progress_bar_is_documented():
    """rl_zoo3 shows no progress unless asked (`-P`/`--progress`): docs/zoo.md says so, and the flag is rl_zoo3's."""
    import rl_zoo3.train

    zoo_md = (Path(__file__).resolve().parents[1] / "docs" / "zoo.md").read_text(encoding="utf-8")
    assert re.search(r"python -m rl_zoo3\.train [^\n]*-P\b", zoo_md), "docs/zoo.md shows no rl_zoo3.train command with -P"
    assert '"--progress"' in Path(rl_zoo3.train.__file__).read_text() and '"-P"' in Path(rl_zoo3.train.__file__).read_text()


# ------------------------------------------------------------------------------------------------
# issue 23 (hardening), items 1-4, 9-11: class names, sizes, YAML aliases, archives, report, Hub weights
# ------------------------------------------------------------------------------------------------

# Callables under trusted package prefixes that an earlier prefix check let through (issue 23's probes).
PREFIX_PROBES = [
    "sb3_gap.hub.push.push_to_hub",
    "sb3_gap.sweep.workers.run_sweep",
    "stable_baselines3.common.save_util.save_to_zip_file",
    "gymnasium.make",
    "rl_zoo3.utils.get_latest_run_id",
]


@pytest.mark.parametrize("key", ["env_wrapper", "vec_env_wrapper", "callback", "policy"])
@pytest.mark.parametrize("name", PREFIX_PROBES)
def test_issue23_item1_class_names_outside_the_allow_list_are_refused(key, name):
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
def test_issue23_item1_file_writers_and_other_kinds_are_refused_under_any_name(key, name):
    with pytest.raises(ValueError, match="refused for downloaded configs"):
        zoo_yaml.check_zoo_config({key: name})


def test_issue23_item1_our_wrappers_and_the_zoo_configs_still_pass():
    zoo_yaml.check_zoo_config({"env_wrapper": ["sb3_gap.envs.minatar.MinAtarImage", "rl_zoo3.wrappers.FrameSkip",
                                               "stable_baselines3.common.atari_wrappers.AtariWrapper", "gymnasium.wrappers.TimeLimit"],
                               "vec_env_wrapper": "stable_baselines3.common.vec_env.VecTransposeImage",
                               "callback": "stable_baselines3.common.callbacks.ProgressBarCallback",
                               "policy": "sb3_gap.rainbow.policies.RainbowPolicy"})  # fmt: skip
    for path in sorted((Path(__file__).resolve().parents[1] / "zoo_configs").glob("*.yml")):
        for section in yaml.safe_load(path.read_text()).values():  # local files: their anchors load
            if isinstance(section, dict):
                zoo_yaml.check_zoo_config(section, path.name)


def test_issue23_item1_pull_refuses_a_function_as_env_wrapper(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "mallory/push-as-wrapper", {**files, "config.yml": b"env_wrapper: sb3_gap.hub.push.push_to_hub\n"})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/push-as-wrapper", "-f", str(tmp_path / "dl")], "pull")
    assert "'sb3_gap.hub.push.push_to_hub', which is not an allowed class" in line and "gymnasium.wrappers.ClipReward" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"frame_stack": 10**9}, "frame_stack must be an integer >= 0 and at most 256"),
        ({"frame_stack": "1000000000"}, "frame_stack must be an integer >= 0 and at most 256"),
        ({"frame_stack": 2.5}, "frame_stack must be an integer"),
        ({"env_wrapper": [{"gymnasium.wrappers.FrameStackObservation": {"stack_size": 10**9}}]}, "stack_size must be an integer"),
    ],
)
def test_issue23_item2_downloaded_frame_stack_is_bounded(entry, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        zoo_yaml.check_zoo_config(entry)
    zoo_yaml.check_zoo_config({"frame_stack": 4, "env_wrapper": [{"gymnasium.wrappers.FrameStackObservation": {"stack_size": 4}}]})


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


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(psi_depth=20_000), "psi_depth must be an integer >= 0 and at most 64"),
        (dict(extra_blocks=100_000), "extra_blocks must be an integer >= 0 and at most 32"),
        (dict(encoder="minatar_deep", extra_blocks=5_000), "extra_blocks must be an integer >= 0 and at most 32"),
    ],
)
def test_issue23_item2_depths_are_bounded_in_policy_kwargs_and_the_sweep(tmp_path, kwargs, words):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(words)):
        policy_kwargs(**kwargs)
    with pytest.raises(ValueError, match=re.escape(words)):
        SweepSpec(envs=[ENV_ID], encoders=[kwargs.get("encoder", "impala")], fixed={k: v for k, v in kwargs.items() if k != "encoder"},
                  storage=f"sqlite:///{tmp_path}/s.db").validate()  # fmt: skip
    assert time.perf_counter() - start < 10


def test_issue23_item2_total_parameters_are_estimated_before_allocating(no_big_layers):
    from sb3_gap.extractor import MAX_PARAMETERS, estimate_parameters

    space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert estimate_parameters(space, encoder="impala", bottleneck="gap") == sum(p.numel() for p in ConvExtractor(space).parameters())
    big = dict(encoder="impala", bottleneck="flatten", width_scale=64, psi_depth=8)  # every size within its own bound
    policy_kwargs(**big)
    for call in (lambda: estimate_parameters(space, **big), lambda: ConvExtractor(space, **big)):
        with pytest.raises(ValueError, match=rf"would have [0-9,]+ parameters, more than {MAX_PARAMETERS:,}"):
            call()


def test_issue23_item2_hub_config_with_a_huge_depth_is_refused_before_building(saved_config, no_big_layers):
    config, weights = saved_config
    config["policy_kwargs"]["features_extractor_kwargs"].update(psi_depth=2_000)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"psi_depth must be an integer >= 0 and at most 64 .*got 2000"):
        safe.build_from_config(config, weights, device="cpu")
    assert time.perf_counter() - start < 10


def alias_yaml(levels: int = 4, fan: int = 5) -> bytes:
    """Nested YAML aliases ("billion laughs"): ``fan ** levels`` strings from a few hundred bytes (small here)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\npolicy: CnnPolicy\n").encode()


@pytest.mark.parametrize("name", ["config.yml", "env_kwargs.yml", "args.yml"])
def test_issue23_item3_downloaded_yaml_with_aliases_is_refused(hub_env, dqn_files, tmp_path, capsys, name):
    _, files = dqn_files
    repo = f"mallory/laughs-{name.split('.')[0].replace('_', '-')}"
    publish(hub_env, repo, {**files, name: alias_yaml()})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert f"{name} holds YAML that is not plain data" in line and "anchors and aliases are refused" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def test_issue23_item3_local_yaml_keeps_its_anchors(tmp_path):
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


def zip_bytes(members: dict[str, bytes], compression: int = 8) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "unpacked, words",
    [
        (80 * 2**20, "unpacks to 83,886,080 bytes, more than the 67,108,864 allowed"),  # above MAX_METRICS_BYTES
        (4 * 2**20, "more than x100"),  # within the size cap, but a bomb's ratio
    ],
)
def test_issue23_item4_metrics_zip_bomb_is_refused_before_unpacking(hub_env, dqn_files, tmp_path, capsys, unpacked, words):
    _, files = dqn_files
    bomb = zip_bytes({"evaluations.npz": bytes(unpacked)})
    assert len(bomb) < unpacked / 500
    repo = f"mallory/metrics-bomb-{unpacked >> 20}"
    publish(hub_env, repo, {**files, "train_eval_metrics.zip": bomb})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert "train_eval_metrics.zip" in line and words in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())
    # A plain metrics zip still unpacks.
    publish(hub_env, "alice/metrics-ok", {**files, "train_eval_metrics.zip": zip_bytes({"evaluations.npz": b"x" * 1000, "0.monitor.csv": b"r,l\n"})})
    info = pull_from_hub("alice/metrics-ok", tmp_path / "ok")
    assert Path(info.log_path, "evaluations.npz").stat().st_size == 1000


def test_issue23_item4_pickled_model_zip_bomb_is_refused(hub_env, tmp_path):
    bomb = zip_bytes({"data": b"{}", "policy.pth": bytes(8 * 2**20)})
    publish(hub_env, "mallory/model-bomb", {f"dqn-{ENV_NAME}.zip": bomb})
    for call in (lambda: pull_from_hub("mallory/model-bomb", tmp_path / "dl", algo="dqn", env_id=ENV_ID, allow_pickle=True),
                 lambda: load_from_hub("mallory/model-bomb", algo="dqn", env_id=ENV_ID, allow_pickle=True)):  # fmt: skip
        with pytest.raises(ValueError, match=rf"dqn-{ENV_NAME}.zip unpacks .* more than x100"):
            call()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_issue23_item11_non_finite_weights_are_refused(hub_env, dqn_files, saved_config, tmp_path, capsys, value):
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


def test_issue23_item11_negative_exp_id_is_refused(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "alice/exp-id", files)
    line = one_line_error(capsys, ["pull", "--repo-id", "alice/exp-id", "-f", str(tmp_path / "dl"), "--exp-id", "-1"], "pull")
    assert "--exp-id" in line and "must be an integer >= 0" in line and "got -1" in line
    assert not (tmp_path / "dl").exists()
    line = one_line_error(capsys, ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path / "logs"), "--repo-id", "alice/x",
                                   "--exp-id", "-3", "--no-video"], "push")  # fmt: skip
    assert "--exp-id" in line and "got -3" in line


def test_issue23_item11_truncated_pickled_zip_is_an_error_not_saved(hub_env, tmp_path, capsys):
    buf = io.BytesIO()
    tiny_dqn().save(buf)
    whole = buf.getvalue()
    publish(hub_env, "alice/truncated-zip", {f"dqn-{ENV_NAME}.zip": whole[: len(whole) // 2]})
    argv = ["pull", "--repo-id", "alice/truncated-zip", "-f", str(tmp_path / "dl"), "--algo", "dqn", "--env", ENV_ID, "--allow-pickle"]
    line = one_line_error(capsys, argv, "pull")
    assert f"dqn-{ENV_NAME}.zip is not a valid zip archive" in line and "truncated" in line
    assert not list((tmp_path / "dl" / "dqn").glob(f"{ENV_NAME}_*"))
    # damaged inside (a flipped byte in a member): the CRC check catches it too
    broken = bytearray(whole)
    start = whole.index(b"policy.pth") + 200
    broken[start : start + 64] = bytes(64)
    publish(hub_env, "alice/damaged-zip", {f"dqn-{ENV_NAME}.zip": bytes(broken)})
    line = one_line_error(capsys, [*argv[:2], "alice/damaged-zip", *argv[3:]], "pull")
    assert "is not a valid zip archive" in line


def test_issue23_item9_report_never_writes_into_a_foreign_database(tmp_path, capsys):
    db = tmp_path / "foreign.db"
    make_sqlite(db, rows=3)
    before = db.read_bytes()
    line = one_line_error(capsys, ["report", "--storage", f"sqlite:///{db}", "--study", "s", "--out", str(tmp_path / "r")], "report")
    assert "holds no Optuna study" in line and "['t']" in line and "nothing was written" in line
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["t"]
    conn.close()


def test_issue23_item9_study_made_by_another_tool_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/other.db"
    study = optuna.create_study(storage=url, study_name="tuned")
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)}, value=1.0))
    line = one_line_error(capsys, ["report", "--storage", url, "--study", "tuned", "--out", str(tmp_path / "r")], "report")
    assert "Study 'tuned'" in line and "was not made by `sb3-gap sweep`" in line and "['x']" in line


@pytest.fixture
def finished_study(tmp_path):
    """A sweep study whose one cell has a COMPLETE trial (recorded directly, nothing trained)."""
    url = f"sqlite:///{tmp_path}/s.db"
    spec = SweepSpec(envs=[ENV_ID], algos=["dqn"], bottlenecks=["gap"], storage=url, study="s", out_dir=str(tmp_path / "runs"))
    study = open_study(spec)
    for cell in spec.cells():
        distributions = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in cell.items()}
        study.add_trial(optuna.trial.create_trial(params=cell, distributions=distributions, value=2.0, user_attrs={"wall_s": 60.0}))
    return url


@pytest.mark.parametrize("pair", ["[NaN, 10]", "[0, Infinity]", "[true, 10]"])
def test_issue23_item10_reference_must_be_finite(finished_study, tmp_path, capsys, pair):
    ref = tmp_path / "ref.json"
    ref.write_text(f'{{"{ENV_ID}": {pair}}}')
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--reference", str(ref)],
                          "report")  # fmt: skip
    assert str(ref) in line and "two finite numbers" in line and ENV_ID in line
    assert not (tmp_path / "r" / "summary.md").exists()


@pytest.mark.parametrize("gamma", ["nan", "inf"])
def test_issue23_item10_gamma_must_be_finite(finished_study, tmp_path, capsys, gamma):
    line = one_line_error(capsys, ["report", "--storage", finished_study, "--study", "s", "--out", str(tmp_path / "r"), "--gamma", gamma], "report")
    assert "--gamma" in line and "finite number" in line and gamma in line
    assert not (tmp_path / "r").exists()


def test_issue23_item10_summary_names_the_gamma_used(finished_study, tmp_path):
    from sb3_gap.sweep.report import build_report

    summary = build_report([(finished_study, "s")], tmp_path / "r", gamma=0.5, reps=20).read_text()
    assert "below γ = 0.5," in summary and "γ = 1," not in summary


# ------------------------------------------------------------------------------------------------
# issue 23, item 6 (and 13: Kron callables, train_freq=0): no out-of-range number trains silently
# ------------------------------------------------------------------------------------------------

BAD_NUMBERS = [
    (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(learning_rate=float("inf")), "learning_rate"),
    (dict(tau=0.0), "tau"),
    (dict(tau=2.0), "tau"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),  # clip_grad_norm_ with a negative norm flips the gradient
    (dict(gamma=float("nan")), "gamma"),
    (dict(batch_size=0), "batch_size"),
    (dict(train_freq=0), "train_freq"),
    (dict(train_freq=(0, "step")), "train_freq"),
    (dict(train_freq=(4, "epoch")), "train_freq unit"),
    (dict(gradient_steps=0), "gradient_steps"),
    (dict(gradient_steps=-3), "gradient_steps"),
    (dict(exploration_fraction=-0.1), "exploration_fraction"),
    (dict(target_update_interval=0), "target_update_interval"),
    (dict(sigma0=float("nan")), "sigma0"),
    (dict(priority_alpha=float("nan")), "priority_alpha"),
    (dict(priority_eps=-1.0), "priority_eps"),
    (dict(learning_starts=-5), "learning_starts"),
]


@pytest.mark.parametrize("kwargs, name", BAD_NUMBERS, ids=lambda x: repr(x) if isinstance(x, dict) else None)
def test_issue23_item6_rainbow_refuses_out_of_range_numbers(kwargs, name):
    with pytest.raises(ValueError, match=rf"^(Unknown )?{re.escape(name)}( must be .*got |.*valid choices)") as info:
        Rainbow("MlpPolicy", "CartPole-v1", **{"buffer_size": 64, "batch_size": 8, **kwargs})
    assert "\n" not in str(info.value)


def test_issue23_item6_the_table_keeps_valid_values():
    from sb3_gap.algo_args import check_algo_args

    check_algo_args(dict(learning_rate=lambda p: 1e-4 * p, max_grad_norm=None, gradient_steps=-1, train_freq=(1, "episode"),
                         exploration_fraction=None, clip_range="lin_0.1", gamma=1.0, priority_beta=1.0, unknown=object()))  # fmt: skip
    with pytest.raises(ValueError, match=r"^clip_range must be a finite number > 0"):
        check_algo_args(dict(clip_range="lin_-0.1"))


@pytest.mark.parametrize("setting, name", [("max_grad_norm=-1", "max_grad_norm"), ("tau=2", "tau"), ("batch_size=0", "batch_size"),
                                           ("train_freq=0", "train_freq"), ("gradient_steps=0", "gradient_steps")])  # fmt: skip
def test_issue23_item6_sweep_set_out_of_range_is_one_line_before_the_study(tmp_path, capsys, setting, name):
    db = tmp_path / "s.db"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{db}", "--set", setting), "sweep")
    assert name in line and "must be" in line
    assert not db.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo"])
def test_issue23_item6_zoo_hook_refuses_out_of_range_numbers_for_every_algo(tmp_path, capsys, algo):
    line = one_line_error(capsys, ["train", "--algo", algo, "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path),
                                   "--hyperparams", "max_grad_norm:-1.0"], "train")  # fmt: skip
    assert "max_grad_norm must be a finite number > 0" in line and "-1.0" in line
    assert not any(tmp_path.rglob("*.zip"))


def test_issue23_item6_and_13_kron_options_are_checked_at_construction():
    from kron_torch import precond_update_prob_schedule

    from sb3_gap.optim import Kron

    params = [th.nn.Parameter(th.zeros(3, 3))]
    for bad, name in ((dict(b1=float("nan")), "b1"), (dict(b1=1.0), "b1"), (dict(lr=-1.0), "lr"), (dict(precond_lr=0.0), "precond_lr"),
                      (dict(max_size_triangular=0), "max_size_triangular"), (dict(memory_save_mode="some"), "memory_save_mode"),
                      (dict(preconditioner_update_probability=1.5), "preconditioner_update_probability")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"^(Unknown )?Kron {name}"):
            Kron(params, **bad)
        if name != "lr":  # (the learning rate comes from the algorithm) policy_kwargs refuses it before any model is built
            with pytest.raises(ValueError, match=rf"Kron {name}"):
                policy_kwargs(encoder="nature", optimizer="kron", optimizer_kwargs=bad)
    # item 13: a callable other than kron-torch's schedule could not be saved with the model: refused when built
    with pytest.raises(ValueError, match=r"callable other than kron-torch's schedule"):
        Kron(params, preconditioner_update_probability=lambda n: 0.5)
    # kron_torch's exported schedule is dist_kron's ProbScheduler: accepted, and its state dict saves (it raised before)
    assert Kron(params, preconditioner_update_probability=precond_update_prob_schedule(min_prob=0.1)).state_dict()["kron"]
    Kron(params, preconditioner_update_probability=0.5, b1=0.0)


# ------------------------------------------------------------------------------------------------
# issue 23, item 8 (and 13: --device bogus): --device cuda without a GPU is an error, never a silent CPU run
# ------------------------------------------------------------------------------------------------

no_gpu = pytest.mark.skipif(th.cuda.is_available(), reason="checks the machine without a CUDA GPU")


def test_issue23_item13_unknown_device_is_one_line(tmp_path, capsys):
    from sb3_gap.checks import check_device

    assert check_device("auto") == "auto" and check_device("cpu") == "cpu" and check_device(th.device("cpu")) == "cpu"
    line = one_line_error(capsys, tiny_sweep_args(tmp_path, "--storage", f"sqlite:///{tmp_path}/s.db", "--device", "bogus"), "sweep")
    assert "Unknown --device 'bogus'; valid choices: ['auto', 'cpu', 'cuda', 'cuda:N', 'mps']" in line
    with pytest.raises(ValueError, match=r"Unknown device 'bogus'"):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=64, batch_size=8, device="bogus")


@no_gpu
def test_issue23_item8_device_cuda_without_a_gpu_is_refused_everywhere(tmp_path, capsys):
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
