"""RL Zoo integration: the startup hook (its checks, the replay's gamma), YAML names, the Rainbow sampler, and the literal
``python -m rl_zoo3.train`` / ``rl_zoo3.enjoy`` commands with tiny budgets (subprocesses)."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from helpers import frame_dqn, one_line_error  # tests/ is on sys.path (pytest's rootdir-relative import)

import sb3_gap
from sb3_gap.extractor import ConvExtractor
from sb3_gap.replay import FrameReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "zoo_configs").glob("*.yml"))
SECTIONS = {"atari", "atari100k", "procgen", "minatar"}  # rl_zoo3's `atari` + anchor-holding blocks
HOOK_HINT = "the sb3_gap_zoo.pth startup hook is not installed: `pip install -e .` (or see docs/zoo.md)"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Use this checkout's sb3_gap (and hook module) even where another copy is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def _run(args: list[str], cwd: Path, **extra: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**extra), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{out[-4000:]}"
    return out


# --------------------------------------------------------------------------- hook, in-process registration


@pytest.mark.slow
def test_startup_hook_is_lazy() -> None:
    """Every Python start gets the finder, but neither sb3_gap nor rl_zoo3 is imported until rl_zoo3 is."""
    code = "import sys; print(any(type(f).__name__ == 'ZooHookFinder' for f in sys.meta_path), 'sb3_gap' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"], HOOK_HINT
    code = "import rl_zoo3.utils as u, sys; print('rainbow' in u.ALGOS, u.ALGOS['rainbow'].__module__, sys.modules['sb3_gap'].__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["True", "sb3_gap.rainbow.rainbow"], HOOK_HINT
    assert out[2] == sb3_gap.__file__  # the checkout's sb3_gap, not another install
    # a look-up that imports nothing (importlib.util.find_spec) leaves the hook in place for the import that follows
    code = "import importlib.util; importlib.util.find_spec('rl_zoo3'); import rl_zoo3.utils as u; print('rainbow' in u.ALGOS)"
    assert subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True).stdout.split() == ["True"]
    off = subprocess.run(
        [sys.executable, "-c", "import rl_zoo3.utils as u; print('rainbow' in u.ALGOS)"],
        env=_env(SB3_GAP_NO_ZOO_HOOK="1"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert off.strip() == "False"


def test_register_with_zoo() -> None:
    import optuna
    import rl_zoo3.exp_manager as exp_manager
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    from sb3_gap.algos import get_algo
    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    register_with_zoo()  # idempotent
    assert ALGOS["rainbow"] is get_algo("rainbow")
    # YAML strings are eval()ed in rl_zoo3.exp_manager's namespace:
    kwargs = eval("policy_kwargs(encoder='impala', bottleneck='gap', width_scale=4)", vars(exp_manager))
    assert kwargs["features_extractor_class"] is ConvExtractor and kwargs["net_arch"] == []
    assert kwargs["features_extractor_kwargs"]["width_scale"] == 4
    # Atari ids get the YAML `atari` section (and stochastic evaluation), other ids do not.
    is_atari = exp_manager.ExperimentManager.is_atari
    assert is_atari("Dopamine/Pong-v5") and is_atari("Atari100k/Pong-v5") and is_atari("ALE/Pong-v5")
    assert not is_atari("MinAtar/Breakout-v1") and not is_atari("Procgen/Bigfish-v0")
    # -optimize: the sampler returns valid Rainbow kwargs, the converter rebuilds them from a best trial.
    trial = optuna.trial.FixedTrial(
        {
            "learning_rate": 1e-4,
            "one_minus_gamma": 0.01,
            "n_steps": 3,
            "target_update_interval": 1000,
            "exploration_final_eps": 0.01,
            "bottleneck": "flatten",
            "width_scale": 2,
        }
    )
    params = HYPERPARAMS_SAMPLER["rainbow"](trial, 4, 1, {})
    assert params["gamma"] == pytest.approx(0.99) and params["n_steps"] == 3
    assert params["policy_kwargs"]["features_extractor_kwargs"]["bottleneck"] == "flatten"
    assert HYPERPARAMS_CONVERTER["rainbow"]({"bottleneck": "gap", "width_scale": 4})["policy_kwargs"]["net_arch"] == []


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_zoo_configs_are_valid(config: Path) -> None:
    """Every key is a registered env id (or a shared block); every policy_kwargs string builds ConvExtractor, net_arch=[]."""
    import rl_zoo3.exp_manager as exp_manager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    text = config.read_text()
    assert "Table 1" in text or config.stem == "ppo"  # hyperparameters cite their source
    hyperparams = yaml.safe_load(text)
    assert {"atari", "procgen", "minatar"} <= set(hyperparams)
    for key, section in hyperparams.items():
        assert key in SECTIONS or key in gym.envs.registry, f"{config.name}: {key!r} is not a registered env id"
        kwargs = eval(section["policy_kwargs"], vars(exp_manager))
        assert kwargs["features_extractor_class"] is ConvExtractor and kwargs["net_arch"] == []
        assert kwargs["features_extractor_kwargs"]["bottleneck"] == "gap"
        assert kwargs["features_extractor_kwargs"]["width_scale"] == 4
    assert hyperparams["atari"]["frame_stack"] == 4
    # Training-only wrappers of the protocol (one source: sb3_gap.envs.atari.TRAIN_WRAPPERS).
    from sb3_gap.envs.atari import TRAIN_WRAPPERS

    assert hyperparams["atari"]["env_wrapper"] == TRAIN_WRAPPERS["Atari100k" if config.stem == "der" else "Dopamine"]
    if "Atari100k/Pong-v5" in hyperparams:
        assert hyperparams["Atari100k/Pong-v5"]["env_wrapper"] == TRAIN_WRAPPERS["Atari100k"]


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo"])
def test_policy_kwargs_net_arch_empty_adds_only_the_head(algo: str) -> None:
    """sb3_gap's policy_kwargs (net_arch=[]) in dqn/qrdqn/ppo: ψ is the extractor, then only the output layer(s)."""
    import torch as th

    from sb3_gap.algos import get_algo

    env = gym.make("MinAtar/Breakout-v1")
    model = get_algo(algo)(
        "CnnPolicy",
        env,
        policy_kwargs=sb3_gap.policy_kwargs(bottleneck="gap", width_scale=1),
        device="cpu",
        **({"n_steps": 8, "batch_size": 8} if algo == "ppo" else {"buffer_size": 100}),
    )
    heads = [m for name, m in model.policy.named_modules() if isinstance(m, th.nn.Linear) and "features_extractor" not in name]
    assert heads and all(h.in_features == 512 for h in heads)  # no hidden [64, 64] MLP after ψ


@pytest.mark.slow
def test_wheel_installs_the_startup_hook(tmp_path: Path) -> None:
    """A non-editable install puts sb3_gap_zoo.pth and the hook module at the root of site-packages."""
    import shutil

    src = tmp_path / "src"  # build a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    shutil.copytree(ROOT / "sb3_gap", src / "sb3_gap", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md", "MANIFEST.in", "sb3_gap_zoo.pth", "sb3_gap_zoo_hook.py"):
        shutil.copy(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("sb3_gap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sb3_gap_zoo.pth" in names and "sb3_gap_zoo_hook.py" in names


# --------------------------------------------------------------------------- the literal commands


TINY_DQN = ["learning_starts:50", "buffer_size:500", "target_update_interval:50", "train_freq:4"]
TINY_NET = "policy_kwargs:\"policy_kwargs(encoder='impala', bottleneck='gap', width_scale=1)\""
COMMON = ["--eval-freq", "-1", "--seed", "0", "--device", "cpu", "-f", "logs", "--log-interval", "-1"]


def _train(tmp_path: Path, algo: str, env_id: str, config: str, extra: list[str], n: int = 200, module: str = "rl_zoo3.train", **env: str) -> Path:
    conf = str(ROOT / "zoo_configs" / config)
    _run(["-m", module, "--algo", algo, "--env", env_id, "--conf-file", conf, "-n", str(n), *COMMON, "--hyperparams", *extra], tmp_path, **env)
    (model,) = (tmp_path / "logs" / algo).glob(f"{env_id.replace('/', '-')}_*/{env_id.replace('/', '-')}.zip")
    return model


def _enjoy(tmp_path: Path, algo: str, env_id: str) -> str:
    return _run(["-m", "rl_zoo3.enjoy", "--algo", algo, "--env", env_id, "-f", "logs/", "-n", "60", "--no-render", "--device", "cpu"], tmp_path)


@pytest.mark.slow
def test_zoo_rainbow_minatar_train_and_enjoy(tmp_path: Path) -> None:
    _train(tmp_path, "rainbow", "MinAtar/Breakout-v1", "rainbow.yml", [*TINY_DQN, "exploration_steps:100", "n_atoms:11", TINY_NET])
    config = yaml.load(
        next((tmp_path / "logs" / "rainbow").glob("*/MinAtar-Breakout-v1/config.yml")).read_text(), Loader=yaml.UnsafeLoader
    )  # rl_zoo3 writes OrderedDict tags
    assert dict(config)["policy_kwargs"] == "policy_kwargs(encoder='impala', bottleneck='gap', width_scale=1)"
    _enjoy(tmp_path, "rainbow", "MinAtar/Breakout-v1")


def test_zoo_eval_env_gets_the_yaml_env_kwargs(tmp_path: Path) -> None:
    """rl_zoo3's evaluation env gets the YAML's env_kwargs when --eval-env-kwargs is not given (sb3_gap.zoo).

    rl_zoo3 alone builds it without them: on MinAtar (YAML: full 6-action set) it has Breakout's 3 minimal
    actions, and `--eval-freq` crashes with IndexError in minatar/gym.py whenever the greedy action is >= 3.
    """
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    manager = ExperimentManager(argparse.Namespace(), "dqn", "MinAtar/Breakout-v1", str(tmp_path), config=str(ROOT / "zoo_configs" / "dqn.yml"))
    hyperparams, _ = manager.read_hyperparameters()
    manager._preprocess_hyperparams(hyperparams)
    assert manager.env_kwargs == {"use_minimal_action_set": False}
    assert manager.eval_env_kwargs == manager.env_kwargs
    train_env, eval_env = manager.create_envs(1, no_log=True), manager.create_envs(1, eval_env=True, no_log=True)
    assert eval_env.action_space == train_env.action_space and eval_env.action_space.n == 6
    train_env.close()
    eval_env.close()
    # Given on the command line, --eval-env-kwargs still wins.
    manager = ExperimentManager(argparse.Namespace(), "dqn", "MinAtar/Breakout-v1", str(tmp_path),
                                config=str(ROOT / "zoo_configs" / "dqn.yml"), eval_env_kwargs={"use_minimal_action_set": True})  # fmt: skip
    manager._preprocess_hyperparams(manager.read_hyperparameters()[0])
    assert manager.eval_env_kwargs == {"use_minimal_action_set": True}


@pytest.mark.slow
def test_zoo_qrdqn_minatar_flatten_override(tmp_path: Path) -> None:
    """GAP is the YAML's; flatten x1 comes from --hyperparams (the paper's baseline, side by side)."""
    from sb3_contrib import QRDQN

    net = "policy_kwargs:\"dict(policy_kwargs(encoder='impala', bottleneck='flatten', width_scale=1), n_quantiles=10)\""
    model = QRDQN.load(_train(tmp_path, "qrdqn", "MinAtar/Breakout-v1", "qrdqn.yml", [*TINY_DQN, net]), device="cpu")
    from sb3_gap.bottlenecks import Flatten

    assert type(model.quantile_net.features_extractor.bottleneck) is Flatten
    assert model.quantile_net.n_quantiles == 10


@pytest.mark.slow
def test_sb3_gap_train_ppo_minatar_without_hook(tmp_path: Path) -> None:
    """`python -m sb3_gap.train` registers by itself (hook disabled) and takes rl_zoo3.train's CLI."""
    _train(
        tmp_path,
        "ppo",
        "MinAtar/Breakout-v1",
        "ppo.yml",
        ["n_envs:2", "n_steps:32", "batch_size:32", "n_epochs:1", TINY_NET],
        n=128,
        module="sb3_gap.train",
        SB3_GAP_NO_ZOO_HOOK="1",
    )
    _enjoy(tmp_path, "ppo", "MinAtar/Breakout-v1")


@pytest.mark.slow
def test_zoo_rainbow_atari_dopamine_train_and_enjoy(tmp_path: Path) -> None:
    """`Dopamine/Pong-v5` picks the YAML's `atari` section: ClipRewardEnv and VecFrameStack(4)."""
    from sb3_gap.rainbow import Rainbow

    model = Rainbow.load(
        _train(
            tmp_path,
            "rainbow",
            "Dopamine/Pong-v5",
            "rainbow.yml",
            [*TINY_DQN, "exploration_steps:100", "n_atoms:11", "buffer_size:300", TINY_NET],
            n=100,
        ),
        device="cpu",
    )
    assert model.observation_space.shape == (4, 84, 84)
    _enjoy(tmp_path, "rainbow", "Dopamine/Pong-v5")


@pytest.mark.slow
def test_zoo_ppo_procgen_train_and_enjoy(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO.load(
        _train(tmp_path, "ppo", "Procgen/Bigfish-v0", "ppo.yml", ["n_envs:2", "n_steps:32", "batch_size:32", "n_epochs:1", TINY_NET], n=64),
        device="cpu",
    )
    assert model.observation_space.shape == (3, 64, 64)
    _enjoy(tmp_path, "ppo", "Procgen/Bigfish-v0")


# --------------------------------------------------------------------------- every section fits this machine

SECTION_ENVS = {"atari": "Dopamine/Pong-v5", "atari100k": "Atari100k/Pong-v5", "procgen": "Procgen/Bigfish-v0", "minatar": "MinAtar/Breakout-v1"}
OFF_POLICY_SECTIONS = [
    (config.stem, section)
    for config in CONFIGS
    if config.stem != "ppo"  # on-policy: no replay
    for section in SECTION_ENVS
    if section in yaml.safe_load(config.read_text())
]
#: Replay one run may reserve on the 24 GB machine the documented commands must run on (model, envs and
#: the rest of the process need the remainder); frame-stacked Atari replays must stay under 7.5 GB.
REPLAY_BUDGET, ATARI_REPLAY_BUDGET = 13e9, 7.5e9


def _replay_nbytes(buffer) -> int:
    """Bytes the replay holds once full (np.zeros reserves them lazily: nothing is touched here)."""
    if hasattr(buffer, "storage_nbytes"):
        return buffer.storage_nbytes()
    return sum(v.nbytes for v in vars(buffer).values() if isinstance(v, np.ndarray))


@pytest.mark.parametrize(("config", "section"), OFF_POLICY_SECTIONS, ids=lambda v: v)
def test_zoo_section_builds_with_its_real_buffer_size(config: str, section: str, tmp_path: Path) -> None:
    """rl_zoo3 builds the section's model and replay (real buffer_size) here, then acts and stores 16 steps."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    algo = "rainbow" if config == "der" else config  # der.yml is Rainbow's Atari-100k file
    raw = yaml.safe_load((ROOT / "zoo_configs" / f"{config}.yml").read_text())[section]
    manager = ExperimentManager(argparse.Namespace(), algo, SECTION_ENVS[section], str(tmp_path), eval_freq=-1, device="cpu",
                                verbose=0, seed=0, config=str(ROOT / "zoo_configs" / f"{config}.yml"))  # fmt: skip
    model, _ = manager.setup_experiment()
    try:
        buffer = model.replay_buffer
        assert buffer.buffer_size * buffer.n_envs == raw["buffer_size"]
        nbytes = _replay_nbytes(buffer)
        assert nbytes <= REPLAY_BUDGET, f"{config}.yml {section}: the replay reserves {nbytes / 1e9:.1f} GB"
        if "frame_stack" in raw:  # frames stored once, the stack rebuilt at sample time
            assert buffer.frame_stack == raw["frame_stack"] and nbytes <= ATARI_REPLAY_BUDGET
        assert raw["learning_starts"] > 16
        model.learn(16)  # acting and storing only: the real env's stacks go through add()'s checks
        assert buffer.size() == 16
        assert buffer.sample(4).observations.shape == (4, *model.observation_space.shape)
    finally:
        model.env.close()


def test_yaml_numbers_load_as_numbers() -> None:
    """YAML 1.1 reads 5e-05 (no dot) as a string, which rl_zoo3 then fails on: every number must load as one."""
    number = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?")

    def strings_that_look_numeric(value, where):
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in strings_that_look_numeric(v, f"{where}.{k}")]
        if isinstance(value, list):
            return [s for i, v in enumerate(value) for s in strings_that_look_numeric(v, f"{where}[{i}]")]
        return [f"{where} = {value!r}"] if isinstance(value, str) and number.fullmatch(value.strip()) else []

    bad = [s for config in CONFIGS for key, section in yaml.safe_load(config.read_text()).items()
           for s in strings_that_look_numeric(section, f"{config.name}:{key}")]  # fmt: skip
    assert not bad, f"write floats as 5.0e-05 or !!float 5e-5: {bad}"


def test_procgen_takes_rl_zoo3_seeds_beyond_int32() -> None:
    """rl_zoo3 draws seeds in [0, 2**32) without --seed; envpool asserts int32: the env maps them."""
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_gap.envs.procgen import envpool_seed, make_procgen_vec_env

    assert envpool_seed(4052478955) == 4052478955 - 2**31 and envpool_seed(7) == 7
    venv = make_vec_env("Procgen/Bigfish-v0", n_envs=1, seed=4052478955)  # what ExperimentManager does
    assert venv.reset().shape == (1, 3, 64, 64)
    venv.close()
    pool = make_procgen_vec_env("bigfish", n_envs=2, seed=2**32 - 1)
    assert pool.reset().shape == (2, 3, 64, 64)
    pool.close()
    with pytest.raises(ValueError, match="seed"):
        envpool_seed(1.5)  # type: ignore[arg-type]


def test_diagnostics_doc_zoo_callback_snippet_builds(tmp_path: Path) -> None:
    """docs/diagnostics.md's `callback:` YAML, as written, through rl_zoo3 (it lacked n_timesteps: KeyError)."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.diagnostics import DiagnosticsCallback, ReDoCallback
    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    doc = (ROOT / "docs" / "diagnostics.md").read_text()
    snippet = doc.split("### From the RL Zoo", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "diag.yml").write_text(snippet)
    manager = ExperimentManager(argparse.Namespace(), "qrdqn", "MinAtar/Breakout-v1", str(tmp_path), eval_freq=-1, device="cpu",
                                verbose=0, seed=0, config=str(tmp_path / "diag.yml"), hyperparams={"buffer_size": 1000})  # fmt: skip
    model, _ = manager.setup_experiment()
    assert {type(c) for c in manager.callbacks} >= {DiagnosticsCallback, ReDoCallback}
    model.env.close()


def test_extractor_cost_updates_only_its_section_of_benchmarks_md() -> None:
    """`benchmarks/extractor_cost.py --out docs/benchmarks.md` (as documented) keeps the file's other sections."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from extractor_cost import SECTION_HEADING, replace_section
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    new = replace_section(doc, SECTION_HEADING, "NEW TABLE")
    assert "NEW TABLE" in new and doc.split("## Other benchmarks", 1)[1] == new.split("## Other benchmarks", 1)[1]
    assert new.startswith("# Benchmarks\n\n" + SECTION_HEADING + "\n\nNEW TABLE\n\n## Other benchmarks")
    assert replace_section(new, SECTION_HEADING, "NEW TABLE") == new
    assert replace_section("", SECTION_HEADING, "T") == f"# Benchmarks\n\n{SECTION_HEADING}\n\nT\n"


# --------------------------------------------------------------------------- the hook never breaks rl_zoo3

#: rl_zoo3's own hyperparameter files (found without importing rl_zoo3 at collection).
RL_ZOO3_CONFIGS = sorted((Path(importlib.util.find_spec("rl_zoo3").origin).parent / "hyperparams").glob("*.yml"))  # type: ignore[arg-type, union-attr]


def _zoo_manager(tmp_path: Path, algo: str, section: dict, env_id: str = "CartPole-v1", **kwargs):
    """An rl_zoo3 ExperimentManager whose YAML is ``{env_id: section}``, sb3_gap's hook registered."""
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    config = tmp_path / f"{algo}.yml"
    config.write_text(yaml.safe_dump({env_id: {"policy": "MlpPolicy", "n_timesteps": 100, **section}}))
    return ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path / "logs"), device="cpu", verbose=0, config=str(config), **kwargs)


def _preprocess(manager):
    return manager._preprocess_hyperparams(manager.read_hyperparameters()[0])[0]


@pytest.mark.parametrize("config", RL_ZOO3_CONFIGS, ids=lambda p: p.stem)
def test_hook_accepts_every_bundled_rl_zoo3_config(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every entry of rl_zoo3's own files (registered env ids; `atari` on an Atari id) goes through rl_zoo3's
    read_hyperparameters and _preprocess_hyperparams with the hook on, and none is refused by sb3_gap: SAC/TQC's
    ent_coef 'auto', lin_<x> schedules, (n, 'episode') train_freq... An entry rl_zoo3 itself cannot preprocess (a
    wrapper module not installed here) fails the same way without the hook. Nothing is built, no env is stepped."""
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS

    from sb3_gap.checks import Refused
    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    if config.stem not in ALGOS:
        pytest.skip(f"{config.name} is no rl_zoo3 algorithm's (her.yml is kept as a reference only)")
    # libyaml once per file, handed to rl_zoo3 as a config module (its `--conf-file package.module` form): the
    # pure-Python YAML parser would take most of the test's time re-reading the file for every entry.
    sections = yaml.load(config.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    module = types.ModuleType("rl_zoo3_bundled_config")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    refused, checked = [], 0
    for key, section in sections.items():
        env_id = "Dopamine/Pong-v5" if key == "atari" else key
        if env_id not in gym.envs.registry:
            continue
        module.hyperparams = {key: copy.deepcopy(section)}
        manager = ExperimentManager(argparse.Namespace(), config.stem, env_id, str(tmp_path), config=module.__name__, verbose=0)
        hyperparams = manager.read_hyperparameters()[0]
        try:
            manager._preprocess_hyperparams(copy.deepcopy(hyperparams))
        except Refused as e:
            refused.append(f"{config.stem} {key}: {e}")
        except Exception as e:  # rl_zoo3's own failure: the same without the hook (__wrapped__: rl_zoo3's method)
            with pytest.raises(type(e)):
                ExperimentManager._preprocess_hyperparams.__wrapped__(manager, copy.deepcopy(hyperparams))
        checked += 1
    assert not refused, refused
    assert checked > 0 or config.stem in ("ars",), f"no entry of {config.name} has a registered env id"


def test_hook_checks_sb3_algorithms_only_for_values_they_misuse() -> None:
    """For SB3/sb3-contrib algorithms every form they take passes (auto ent_coef, a negative one, schedules objects,
    (n, 'episode')); NaN anywhere, a negative max_grad_norm, train_freq 0 are refused; Rainbow keeps the whole table."""
    from rl_zoo3.utils import SimpleLinearSchedule
    from stable_baselines3.common.utils import ConstantSchedule

    from sb3_gap.algo_args import check_algo_args

    host = dict(ent_coef="auto_0.1", learning_rate=SimpleLinearSchedule(3e-4), clip_range="lin_0.2", train_freq=(1, "episode"),
                learning_starts=-1, target_update_interval=0, gradient_steps=-1, target_entropy="auto", use_sde=True)  # fmt: skip
    check_algo_args(host, host=True)
    check_algo_args({"ent_coef": -0.01}, host=True)  # used as written by PPO: not sb3_gap's to refuse
    for bad, name in ((dict(max_grad_norm=-1.0), "max_grad_norm"), (dict(train_freq=0), "train_freq"), (dict(tau=float("nan")), "tau"),
                      (dict(ent_coef=float("nan")), "ent_coef"), (dict(target_noise_clip=float("nan")), "target_noise_clip"),
                      (dict(learning_rate=ConstantSchedule(float("nan"))), "learning_rate"),
                      (dict(learning_rate=SimpleLinearSchedule(-1)), "learning_rate")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            check_algo_args(bad, host=True)
    with pytest.raises(ValueError, match=r"^learning_starts must be"):
        check_algo_args({"learning_starts": -1})  # Rainbow and the sweeps: sb3_gap's own range


@pytest.mark.parametrize("steps", [0, -2])
def test_hook_accepts_gradient_steps_sb3_skips_or_reads_as_minus_one(steps: int) -> None:
    """SB3 skips training at gradient_steps=0 on purpose and reads any negative value as -1
    (off_policy_algorithm.learn): the host's DQN takes both; Rainbow keeps sb3_gap's range (>= 1 or -1)."""
    from sb3_gap.algo_args import check_algo_args

    check_algo_args({"gradient_steps": steps}, host=True)
    with pytest.raises(ValueError, match=rf"^gradient_steps must be an integer >= 1 .*got {steps}$"):
        check_algo_args({"gradient_steps": steps})


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": "lin_-1"}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": "abc"}, "learning_rate must be a finite number > 0 (e.g. 6.25e-5), got 'abc'"),
        ({"clip_range": 0}, "clip_range must be a finite number > 0"),
        ({"clip_range": "lin_-1"}, "clip_range must be a finite number > 0"),
    ],
    ids=["nan", "zero", "lin_-1", "abc", "clip_range_0", "clip_range_lin_-1"],
)
def test_hook_refuses_schedule_values_before_rl_zoo3_makes_schedules(tmp_path: Path, section: dict, words: str) -> None:
    """learning_rate / clip_range are checked as written in the YAML, before rl_zoo3 turns them into schedule objects
    (which any value passed as a callable): NaN, 0 and lin_-1 are one line, not torch's traceback or a silent run."""
    from sb3_gap.zoo import HyperparameterError

    with pytest.raises(HyperparameterError) as info:
        _preprocess(_zoo_manager(tmp_path, "ppo", section))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_sb3_gap_train_prints_a_nan_learning_rate_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`sb3-gap train` with a YAML `learning_rate: .nan`: one line (it was torch's `Invalid learning rate: nan` traceback)."""
    from sb3_gap.train import main

    (tmp_path / "ppo.yml").write_text("CartPole-v1:\n  policy: MlpPolicy\n  n_timesteps: 64\n  learning_rate: .nan\n")
    argv = ["--algo", "ppo", "--env", "CartPole-v1", "--conf-file", str(tmp_path / "ppo.yml"), "-f", str(tmp_path), "--device", "cpu"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert str(info.value.code).startswith("sb3-gap train: error: learning_rate must be a finite number > 0") and "nan" in str(info.value.code)
    assert "Traceback" not in capsys.readouterr().err and not any(tmp_path.rglob("*.zip"))


@pytest.mark.parametrize(
    ("algo", "section", "custom", "words"),
    [
        ("dqn", {"replay_ratio": 2, "train_freq": 4}, None, ["replay_ratio=2 and ['train_freq'] both given", "one or the other"]),
        ("dqn", {}, {"replay_ratio": 1, "gradient_steps": 2}, ["['gradient_steps'] both given in --hyperparams"]),
        ("dqn", {"replay_ratio": "abc"}, None, ["replay_ratio='abc'", "positive number"]),
        ("dqn", {"replay_ratio": 0}, None, ["replay_ratio=0", "positive number"]),
        ("ppo", {"replay_ratio": 1}, None, ["which 'ppo' does not take", "'dqn'", "'rainbow'"]),
    ],
    ids=["with-train_freq", "with-gradient_steps-in-hyperparams", "abc", "zero", "on-policy"],
)
def test_hook_replay_ratio_follows_the_sweeps_rules(tmp_path: Path, algo: str, section: dict, custom: dict | None, words: list[str]) -> None:
    """replay_ratio in a YAML or --hyperparams is refused in one line where the sweep refuses it: given with what it sets
    in the same place, not a positive p/q, or for an on-policy algorithm (PPO's TypeError before)."""
    from sb3_gap.zoo import HyperparameterError

    with pytest.raises(HyperparameterError) as info:
        _preprocess(_zoo_manager(tmp_path, algo, {"buffer_size": 100, **section}, hyperparams=custom))
    message = str(info.value)
    assert all(w in message for w in words) and "\n" not in message, message
    # --hyperparams' ratio replaces the section's own train_freq (a later layer wins), as the sweep's --set does.
    hyperparams = _preprocess(_zoo_manager(tmp_path, "dqn", {"train_freq": 4, "gradient_steps": 1}, hyperparams={"replay_ratio": 2}))
    assert "replay_ratio" not in hyperparams and (hyperparams["train_freq"], hyperparams["gradient_steps"]) == (1, 2)


def test_one_replay_ratio_bound_for_the_hook_the_sweep_and_rainbow(tmp_path: Path) -> None:
    """replay_ratio=1e9 (a run that hangs: 1e9 updates per env step) is refused by the sweep's --set, the hook and
    Rainbow's gradient_steps/train_freq alike, with the one bound of sb3_gap.zoo_config; the bound itself is taken."""
    from sb3_gap.rainbow import Rainbow
    from sb3_gap.replay_ratio import MAX_REPLAY_RATIO, replay_ratio_schedule
    from sb3_gap.sweep.cli import main as sweep_main
    from sb3_gap.zoo import HyperparameterError

    bound = f"more than sb3_gap takes ({MAX_REPLAY_RATIO}"
    with pytest.raises(SystemExit) as info:
        sweep_main(["--envs", "MinAtar/Breakout-v1", "--storage", f"sqlite:///{tmp_path}/x.db", "--out", str(tmp_path), "--set", "replay_ratio=1e9"])
    assert bound in str(info.value.code) and "\n" not in str(info.value.code) and not (tmp_path / "x.db").exists()
    with pytest.raises(HyperparameterError, match=re.escape(bound)):
        _preprocess(_zoo_manager(tmp_path, "dqn", {"buffer_size": 100, "replay_ratio": 1e9}))
    with pytest.raises(ValueError, match=re.escape(bound)):
        Rainbow("MlpPolicy", "CartPole-v1", buffer_size=64, batch_size=8, train_freq=1, gradient_steps=10**9)
    assert replay_ratio_schedule(MAX_REPLAY_RATIO) == (1, MAX_REPLAY_RATIO)
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=2)
    Rainbow("MlpPolicy", env, buffer_size=64, batch_size=8, train_freq=1, gradient_steps=2 * MAX_REPLAY_RATIO)  # per env step: the bound


# --------------------------------------------------------------------------- sb3-gap train: out-of-range numbers; FrameReplayBuffer gets the algorithm's gamma


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo"])
def test_train_refuses_out_of_range_numbers_for_every_algo(tmp_path, capsys, algo):
    line = one_line_error(capsys, ["train", "--algo", algo, "--env", "CartPole-v1", "-n", "64", "-f", str(tmp_path),
                                   "--hyperparams", "max_grad_norm:-1.0"], "train")  # fmt: skip
    assert "max_grad_norm must be a finite number > 0" in line and "-1.0" in line
    assert not any(tmp_path.rglob("*.zip"))


def _cartpole_manager(tmp_path: Path, section: dict, trained_agent: str = "", algo: str = "dqn"):
    """An rl_zoo3 ExperimentManager for CartPole-v1 with ``section`` as its YAML, sb3_gap's hook registered."""
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    config = tmp_path / f"{algo}.yml"
    base = dict(policy="MlpPolicy", n_timesteps=100, buffer_size=200, learning_starts=10_000, policy_kwargs="dict(net_arch=[8])")
    config.write_text(yaml.safe_dump({"CartPole-v1": {**base, **section}}))
    return ExperimentManager(argparse.Namespace(), algo, "CartPole-v1", str(tmp_path / "logs"), eval_freq=-1, device="cpu",
                             verbose=0, seed=0, config=str(config), trained_agent=trained_agent)  # fmt: skip


def test_hook_gives_frame_replay_buffer_the_algorithms_gamma(tmp_path):
    """rl_zoo3 + sb3_gap hook: the YAML's gamma (0.5) reaches an n-step FrameReplayBuffer; without one, the algorithm's
    default does."""
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = _cartpole_manager(tmp_path, section).setup_experiment()
    assert isinstance(model.replay_buffer, FrameReplayBuffer)
    assert model.replay_buffer.n_steps == 3 and model.replay_buffer.gamma == 0.5
    # No gamma in the YAML: the algorithm's default (DQN: 0.99)
    section = dict(replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = _cartpole_manager(tmp_path, section).setup_experiment()
    assert model.replay_buffer.gamma == model.gamma == 0.99


def test_hook_refuses_a_buffer_gamma_other_than_the_algorithms(tmp_path):
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3, gamma=0.99)")
    with pytest.raises(ValueError, match=r"replay_buffer_kwargs gamma=0.99 differs from the algorithm's gamma=0.5") as info:
        _cartpole_manager(tmp_path, section).setup_experiment()
    assert "\n" not in str(info.value)


def test_trained_agent_replay_buffer_with_another_gamma_is_refused(tmp_path):
    """rl_zoo3 --trained-agent loads replay_buffer.pkl next to the model: one saved with another gamma is refused."""
    source = frame_dqn(0.9, dict(n_steps=3, gamma=0.9))
    source.learn(30)
    (tmp_path / "agent").mkdir()
    source.save(tmp_path / "agent" / "CartPole-v1.zip")
    source.save_replay_buffer(tmp_path / "agent" / "replay_buffer.pkl")
    agent = str(tmp_path / "agent" / "CartPole-v1.zip")
    section = dict(gamma=0.5, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    with pytest.raises(ValueError, match=r"gamma: model 0.5, buffer 0.9"):
        _cartpole_manager(tmp_path, section, trained_agent=agent).setup_experiment()
    section = dict(gamma=0.9, replay_buffer_class="FrameReplayBuffer", replay_buffer_kwargs="dict(n_steps=3)")
    model, _ = _cartpole_manager(tmp_path, section, trained_agent=agent).setup_experiment()
    assert model.replay_buffer.pos == source.replay_buffer.pos > 0 and model.replay_buffer.gamma == 0.9
