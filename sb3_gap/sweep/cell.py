"""
One run of a sweep: the settings of a grid cell (its Zoo section, then the sweep's fixed values, then the
cell's hyperparameters), its model, and :func:`train_cell`, which trains and evaluates it and writes
``settings.json``, ``curve.json``, ``result.json`` and ``model.zip`` atomically into the run folder.
"""

from __future__ import annotations

import io
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from tqdm import tqdm

from sb3_gap.algos import get_algo
from sb3_gap.checks import Refused
from sb3_gap.diagnostics.metrics import activity_report, neuron_magnitudes
from sb3_gap.envs.protocols import protocol_for
from sb3_gap.extractor import policy_kwargs
from sb3_gap.files import atomic_write_bytes, atomic_write_json
from sb3_gap.optim import OPTIMIZER_ARGS, optimizer_policy_kwargs
from sb3_gap.params import parameter_report
from sb3_gap.replay import with_algorithm_gamma
from sb3_gap.replay_ratio import apply_replay_ratio
from sb3_gap.sweep.checkpoint import CHECKPOINT_NAME, RunCheckpoint, load_run_state, set_global_rng_state
from sb3_gap.sweep.spec import EXTRACTOR_ARGS, HP_PREFIX, SweepSpec, constructor_args, run_dir_for, run_name
from sb3_gap.zoo_config import ZooSettings, materialize, resolve_section

EVAL_SEED_OFFSET = 10_000  # evaluation envs never share a seed with training envs
#: Dormancy thresholds recorded at each evaluation: the paper's appendix (0.001) and ReDo's (Sokar et al. 2023: 0.1).
DORMANCY_TAUS = (0.001, 0.1)
#: Observations the diagnostics are measured on: the last ``DIAG_BATCH`` training observations, one every ``DIAG_STRIDE`` steps.
DIAG_BATCH, DIAG_STRIDE = 256, 4


class _Discard(io.RawIOBase):
    """A write-only stream that keeps nothing (where :class:`SweepEvalCallback` lets SB3 write its ``.npz``)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


class _RecordEvaluation(BaseCallback):
    """SB3's ``callback_after_eval`` hook of :class:`SweepEvalCallback`: records the evaluation just made."""

    def _on_step(self) -> bool:
        assert isinstance(self.parent, SweepEvalCallback)  # EventCallback sets parent to the callback it hooks into
        self.parent.record_evaluation()
        return True


class SweepEvalCallback(EvalCallback):
    """
    SB3's ``EvalCallback`` (greedy evaluation every ``eval_freq`` calls) that also keeps the learning curve
    on disk, reports it to Optuna and evaluates once more at the end of training.

    The evaluation is SB3's own; after each one (its ``callback_after_eval`` hook) the curve gets the
    evaluation's mean and std, ``curve.json`` is rewritten atomically and ``on_eval(mean, step)`` is called.
    SB3 keeps per-evaluation returns (``evaluations_results``) only with a ``log_path``, which it writes
    as ``.npz`` in place; that file goes to a stream that keeps nothing, so a run folder holds only
    ``curve.json`` (written through a temp file).

    :param eval_env: Evaluation env (the protocol's evaluation variant)
    :param curve_path: Where to write ``{"timesteps", "mean", "std", "wall_s"}``
    :param on_eval: Called with ``(mean_return, num_timesteps)`` after each evaluation
    :param eval_freq: Evaluate every ``eval_freq`` calls (= env steps / n_envs)
    :param n_eval_episodes: Episodes per evaluation
    :param diagnostics: Also record, at each evaluation, ψ's and φ's τ-dormant fractions (τ in :data:`DORMANCY_TAUS`)
        and the feature norms of φ's output and of the extractor's output (paper Fig. 7), measured with
        :func:`sb3_gap.diagnostics.metrics.neuron_magnitudes` on the last :data:`DIAG_BATCH` training
        observations (one kept every :data:`DIAG_STRIDE` env steps); the seconds they take go to ``diagnostics_s``
    """

    def __init__(
        self,
        eval_env: Any,
        curve_path: Path,
        on_eval: Callable[[float, int], None] | None = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 10,
        diagnostics: bool = True,
    ) -> None:
        super().__init__(
            eval_env, callback_after_eval=_RecordEvaluation(), eval_freq=eval_freq, n_eval_episodes=n_eval_episodes, deterministic=True, verbose=0
        )
        self.curve_path = Path(curve_path)
        self.on_eval = on_eval
        self.curve: dict[str, list[float]] = {"timesteps": [], "mean": [], "std": [], "wall_s": []}
        self._start = time.perf_counter()
        self.diagnostics = diagnostics
        self.diagnostics_s = 0.0
        self._obs_ring: np.ndarray | None = None
        self._obs_seen = 0

    def _init_callback(self) -> None:
        with warnings.catch_warnings():
            # The eval env is wrapped for ε-greedy evaluation (EpsilonGreedyActions) where the protocol says so:
            # a different VecEnv type from the training env by design.
            warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
            super()._init_callback()
        self.log_path = _Discard()  # type: ignore[assignment]  # keep evaluations_results, write no .npz

    def _on_step(self) -> bool:
        if self.diagnostics and self.n_calls % DIAG_STRIDE == 0:
            self._keep_observation()
        return super()._on_step()

    def _keep_observation(self) -> None:
        """Keep the first env's newest observation (as the policy sees it) in a ring of :data:`DIAG_BATCH`."""
        obs = self.locals.get("new_obs")
        if not isinstance(obs, np.ndarray):  # Dict observations: no ConvExtractor diagnostics
            return
        if self._obs_ring is None:
            self._obs_ring = np.empty((DIAG_BATCH, *obs.shape[1:]), dtype=obs.dtype)
        self._obs_ring[self._obs_seen % DIAG_BATCH] = obs[0]
        self._obs_seen += 1

    def measure_diagnostics(self) -> dict[str, float]:
        """
        ψ's and φ's τ-dormant fractions and the feature norms on the kept observations (paper Fig. 7):
        ``dormant_psi`` (τ = 0.001; ψ = the dense neurons the width scales, i.e. the outputs of the bottleneck's
        connection layer and of ψ's hidden layers), ``dormant_psi@0.1``, ``dormant_phi``, ``dormant_phi@0.1``,
        ``feature_norm_phi`` (φ's output) and ``feature_norm_out`` (after the bottleneck and ψ).
        Empty before any observation was kept. One forward pass without gradients; the online network's
        mode is restored and no random number is drawn, so training is unchanged.
        """
        if self._obs_ring is None:
            return {}
        start = time.perf_counter()
        obs = self._obs_ring[: min(self._obs_seen, DIAG_BATCH)]
        layers, act, _, norms = neuron_magnitudes(self.model, obs, gradients=False)
        out: dict[str, float] = {}
        for tau in DORMANCY_TAUS:
            report = activity_report("dormant", act, layers, tau)
            suffix = "" if tau == DORMANCY_TAUS[0] else f"@{tau:g}"
            # ψ = the dense neurons after φ that the width scales: the connection's outputs and ψ's hidden layers.
            for key, groups in (("psi", ("bottleneck", "psi")), ("phi", ("phi",))):
                rows = [layer for layer in report.layers if layer.group in groups]
                if rows:
                    out[f"dormant_{key}{suffix}"] = sum(r.inactive for r in rows) / sum(r.neurons for r in rows)
        out["feature_norm_phi"] = norms.get("encoder", float("nan"))
        out["feature_norm_out"] = norms.get("bottleneck", float("nan"))
        self.diagnostics_s += time.perf_counter() - start
        return out

    #: What :meth:`state` keeps: SB3's ``EvalCallback`` record and counters, and this class's curve and diagnostics.
    _STATE_KEYS = (
        "n_calls", "num_timesteps", "best_mean_reward", "last_mean_reward", "evaluations_results", "evaluations_timesteps",
        "evaluations_length", "evaluations_successes", "curve", "diagnostics_s", "_obs_ring", "_obs_seen",
    )  # fmt: skip

    def state(self) -> dict[str, Any]:
        """The record a resumed run continues (:mod:`sb3_gap.sweep.checkpoint`): counters, evaluations, curve, wall time so far."""
        out = {key: getattr(self, key) for key in self._STATE_KEYS}
        out["elapsed_s"] = time.perf_counter() - self._start
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`'s record; the curve's wall time goes on from the checkpoint's."""
        for key in self._STATE_KEYS:
            setattr(self, key, state[key])
        self._start = time.perf_counter() - state["elapsed_s"]

    def _on_training_end(self) -> None:
        if not self.curve["timesteps"] or self.curve["timesteps"][-1] != self.num_timesteps:
            eval_freq, self.eval_freq = self.eval_freq, 1  # EvalCallback evaluates when n_calls % eval_freq == 0
            try:
                super()._on_step()
            finally:
                self.eval_freq = eval_freq

    def record_evaluation(self) -> None:
        """Add the latest evaluation to the curve, write it, log its std and report its mean."""
        returns = self.evaluations_results[-1]
        mean, std = float(np.mean(returns)), float(np.std(returns))
        values = {"timesteps": self.num_timesteps, "mean": mean, "std": std, "wall_s": time.perf_counter() - self._start}
        if self.diagnostics:
            diag = self.measure_diagnostics()
            values.update(diag)
            for key, value in diag.items():
                self.logger.record(f"diagnostics/{key}", value)
        n = len(self.curve["timesteps"])
        for key, value in values.items():  # a key first seen late is NaN-padded so every list stays aligned with timesteps
            self.curve.setdefault(key, [float("nan")] * n).append(value)
        for key in self.curve.keys() - values.keys():
            self.curve[key].append(float("nan"))
        atomic_write_json(self.curve_path, self.curve)
        self.logger.record("eval/std_reward", std)  # EvalCallback logs eval/mean_reward
        self.logger.dump(self.num_timesteps)
        if self.on_eval is not None:
            self.on_eval(mean, self.num_timesteps)


class RunProgressCallback(BaseCallback):
    """
    Per-run progress bar with plain ``tqdm``: SB3's own ``progress_bar=True`` uses a rich live
    display, which cannot nest under the sweep's grid bar.
    """

    def __init__(self, total: int, desc: str, position: int = 1) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc=desc, position=position, leave=False, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.model.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def _jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a settings value (classes and schedules by name)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def resolve_run(spec: SweepSpec, params: dict[str, Any]) -> tuple[ZooSettings, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Everything one grid cell trains with: the Zoo section for its (algo, env) as rl_zoo3 reads it,
    then ``spec.fixed``, then the cell's grid hyperparameters. Nothing is rescaled.

    :return: ``(zoo settings, algorithm kwargs, policy_kwargs, overrides)``, where ``overrides`` are the
        values that differ from the Zoo section (``fixed`` and grid hyperparameters)
    """
    settings = resolve_section(params["algo"], params["env"], spec.conf_dir)
    overrides = {**spec.fixed, **{k[len(HP_PREFIX) :]: v for k, v in params.items() if k.startswith(HP_PREFIX)}}
    net = {k: v for k, v in overrides.items() if k in EXTRACTOR_ARGS}
    algo_overrides = {k: v for k, v in overrides.items() if k not in EXTRACTOR_ARGS}
    # replay_ratio (in the section or the overrides) becomes train_freq and gradient_steps for this run's n_envs.
    kwargs = apply_replay_ratio(settings.algo_kwargs, algo_overrides, n_envs=spec.n_envs, names=(settings.source, "the sweep's --set/--hyperparams"))
    # An n-step FrameReplayBuffer discounts with the algorithm's gamma (SB3 does not pass it to a custom buffer).
    kwargs = with_algorithm_gamma(get_algo(params["algo"]), kwargs)
    accepted = constructor_args(get_algo(params["algo"]))
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise Refused(f"{settings.source} gives {unknown}, which {params['algo']} does not accept; valid: {sorted(accepted)}")
    # The section's own network arguments other than the grid's axes carry over (e.g. layer_norm).
    network = {k: v for k, v in settings.network.items() if k not in ("encoder", "bottleneck", "width_scale")}
    network.update(net)
    optim = {k: network.pop(k) for k in OPTIMIZER_ARGS if k in network}
    pk = {
        **settings.policy_extra,
        **policy_kwargs(encoder=params["encoder"], bottleneck=params["bottleneck"], width_scale=params["width_scale"], **network),
    }
    if optim:  # from the Zoo section's optimizer: its settings carry over where the chosen one takes them (eps to AdamW)
        pk.update(optimizer_policy_kwargs(**optim, base=settings.policy_extra))
    return settings, kwargs, pk, overrides


def run_settings(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The resolved settings of one run as plain JSON (written to ``settings.json`` and listed by the report)."""
    settings, kwargs, pk, overrides = resolve_run(spec, params)
    return _jsonable(
        dict(
            zoo_source=settings.source,
            algo=params["algo"],
            env=params["env"],
            policy="CnnPolicy",
            hyperparameters=dict(sorted(kwargs.items())),
            policy_kwargs=pk,
            env_settings=settings.env,
            overrides=dict(sorted(overrides.items())),
            steps=spec.steps,
            eval=dict(
                freq=spec.eval_freq,
                episodes=spec.eval_episodes,
                final_evals=spec.final_evals,
                epsilon=protocol_for(params["env"]).eval_epsilon,
                protocol=protocol_for(params["env"]).name,
            ),  # fmt: skip
            n_envs=spec.n_envs,
            seed=params["seed"],
        )
    )


def build_model(spec: SweepSpec, params: dict[str, Any], env: Any, tensorboard_log: str | None = None) -> BaseAlgorithm:
    """The algorithm of one grid cell with the hyperparameters of :func:`resolve_run`."""
    _, kwargs, pk, _ = resolve_run(spec, params)
    return get_algo(params["algo"])(
        "CnnPolicy",
        env,
        policy_kwargs=pk,
        seed=params["seed"],
        tensorboard_log=tensorboard_log,
        device=spec.device,
        verbose=0,
        **materialize(kwargs),
    )


def train_cell(
    spec: SweepSpec,
    params: dict[str, Any],
    on_eval: Callable[[float, int], None] | None = None,
    tb_name: str = "run",
    progress: bool = False,
    checkpoints: bool = True,
) -> dict[str, Any]:
    """
    Train and evaluate one grid cell; write ``curve.json``, ``result.json`` and ``model.zip``
    atomically into its run folder.

    With ``checkpoints`` the run's state is written to ``checkpoint.pkl`` in its folder after each evaluation, and a
    run that finds a checkpoint of its own settings there resumes from it (:mod:`sb3_gap.sweep.checkpoint`).

    :return: The result: ``final_score`` (mean of the last ``final_evals`` evaluations),
        ``wall_s``, ``fps``, ``n_evals``, parameter counts and the run folder
    """
    run_dir = run_dir_for(spec, params)
    run_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol_for(params["env"])
    settings = run_settings(spec, params)
    atomic_write_json(run_dir / "settings.json", settings)
    zoo_env = resolve_section(params["algo"], params["env"], spec.conf_dir).env
    env_kwargs = zoo_env.get("env_kwargs")
    checkpoint = run_dir / CHECKPOINT_NAME
    resumed = load_run_state(checkpoint, settings) if checkpoints else None
    assert spec.eval_freq is not None
    if resumed is None:
        env = protocol.make_env(params["env"], spec.n_envs, params["seed"], True, env_kwargs=env_kwargs, env_wrapper=zoo_env.get("env_wrapper"))
        eval_env = protocol.make_eval_env(params["env"], params["seed"] + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
        model = build_model(spec, params, env, tensorboard_log=str(run_dir / "tb"))
    else:
        model, eval_env = resumed.model, resumed.eval_env
        env = model.env  # type: ignore[assignment]  # the training env is part of the checkpoint
    evaluator = SweepEvalCallback(
        eval_env, run_dir / "curve.json", on_eval, eval_freq=max(1, spec.eval_freq // spec.n_envs), n_eval_episodes=spec.eval_episodes
    )
    callbacks: list[BaseCallback] = [evaluator]
    if resumed is not None:
        evaluator.restore(resumed.evaluator)
        if on_eval is not None:  # the new trial gets the curve so far (Optuna's intermediate values)
            for mean, step in zip(evaluator.curve["mean"], evaluator.curve["timesteps"], strict=True):
                on_eval(mean, int(step))
    if checkpoints:
        callbacks.append(RunCheckpoint(checkpoint, evaluator, settings))
    if progress:
        callbacks.append(RunProgressCallback(spec.steps, run_name(params)))
    if resumed is not None:
        set_global_rng_state(resumed.rng)  # last: nothing between here and learn() draws a random number
    start_steps = model.num_timesteps
    wall_before = resumed.evaluator["elapsed_s"] if resumed is not None else 0.0
    start = time.perf_counter()
    model.learn(spec.steps - start_steps, callback=callbacks, tb_log_name=tb_name, reset_num_timesteps=resumed is None)
    wall = wall_before + time.perf_counter() - start
    means = evaluator.curve["mean"]
    counts = parameter_report(model).as_dict()
    diagnostics = {k: v for k, v in evaluator.curve.items() if k not in ("mean", "std", "wall_s")}
    result = dict(
        params=params,
        final_score=float(np.mean(means[-spec.final_evals :])),
        wall_s=wall,
        fps=model.num_timesteps / wall,
        resumed_from=start_steps if resumed is not None else None,  # env steps of the checkpoint the run resumed from
        n_evals=len(means),
        run_dir=str(run_dir),  # as the sweep names it: under a relative --out, relative to where it ran (no machine's path)
        host=socket.gethostname(),
        device=str(model.device),
        settings=settings,
        diagnostics=diagnostics if len(diagnostics) > 1 else None,  # per evaluation: timesteps, dormant_psi, ..., feature_norm_phi
        diagnostics_s=evaluator.diagnostics_s,
        **{f"params_{k}": v for k, v in counts.items()},
    )
    if spec.save_models:
        buffer = io.BytesIO()
        model.save(buffer)
        atomic_write_bytes(run_dir / "model.zip", buffer.getvalue())
    atomic_write_json(run_dir / "result.json", result)
    checkpoint.unlink(missing_ok=True)
    env.close()
    eval_env.close()
    return result
