"""The ``README.md`` model card of an sb3_gap agent on the Hub.

Metadata follows huggingface_sb3 / rl_zoo3 (``library_name: stable-baselines3``, a
``model-index`` entry whose metric ``mean_reward`` is ``"<mean> +/- <std>"``) and adds sb3_gap's
tags (encoder, bottleneck, width scale). Built with ``huggingface_hub``'s ``ModelCardData`` /
``EvalResult`` so the YAML is what the Hub parses.
"""

from __future__ import annotations

from pprint import pformat
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_gap.params import find_extractor, parameter_report


def extractor_tags(model: BaseAlgorithm) -> tuple[dict[str, Any], list[str]]:
    """The ConvExtractor settings of ``model`` (empty if it has none) and the tags naming them."""
    try:
        ext = find_extractor(model)
    except ValueError:
        return {}, []
    kwargs = dict(model.policy_kwargs.get("features_extractor_kwargs", {}))
    settings = {
        "encoder": kwargs.get("encoder", "impala"),
        "bottleneck": kwargs.get("bottleneck", "gap"),
        "width_scale": kwargs.get("width_scale", 1),
        "features_dim": ext.features_dim,
    }
    tags = [f"encoder-{settings['encoder']}", f"bottleneck-{settings['bottleneck']}", f"width-scale-{settings['width_scale']}"]
    return settings, tags


def build_card(
    model: BaseAlgorithm,
    algo: str,
    env_id: str,
    repo_id: str,
    results: dict[str, Any],
    hyperparams: dict[str, Any],
    env_kwargs: dict[str, Any],
    files: list[str],
    dropped_attrs: list[str],
    policy_kwargs: dict[str, Any],
) -> ModelCard:
    """
    The model card: YAML metadata + evaluation protocol, parameter report, usage and hyperparameters.

    :param model: The pushed model
    :param algo: Zoo name of the algorithm (``"rainbow"``)
    :param env_id: Gymnasium id of the environment
    :param repo_id: ``<user>/<name>`` on the Hub
    :param results: The content of ``results.json``
    :param hyperparams: The Zoo's ``config.yml`` content
    :param env_kwargs: Environment keyword arguments
    :param files: Files in the commit
    :param dropped_attrs: Attributes not carried by the pickle-free files
    :param policy_kwargs: The model's ``policy_kwargs`` as plain data (classes by name)
    """
    algo_class = type(model).__name__
    settings, arch_tags = extractor_tags(model)
    score = f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    data = ModelCardData(
        library_name="stable-baselines3",
        tags=[env_id, "deep-reinforcement-learning", "reinforcement-learning", "stable-baselines3", "sb3_gap", algo, *arch_tags],
        model_name=algo_class,
        eval_results=[
            EvalResult(
                task_type="reinforcement-learning",
                task_name="reinforcement-learning",
                dataset_type=env_id,
                dataset_name=env_id,
                metric_type="mean_reward",
                metric_name="mean_reward",
                metric_value=score,
            )
        ],
    )
    arch = (
        f"{settings['encoder'].capitalize()} encoder φ, **{settings['bottleneck']}** bottleneck, "
        f"ψ width ×{settings['width_scale']} ({settings['features_dim']} features)"
        if settings
        else "a network without an sb3_gap extractor"
    )
    if settings:
        rep = parameter_report(model)
        report = (
            "| part | parameters |\n|---|---|\n"
            f"| φ (encoder) | {rep.phi:,} |\n| connection φ→ψ | {rep.connection:,} |\n"
            f"| ψ (rest of the bottleneck and dense layers) | {rep.psi:,} |\n| total | {rep.total:,} |\n"
            f"| effective connection (non-zero) | {rep.effective_connection:,} |\n"
        )
    else:
        report = "No sb3_gap `ConvExtractor` in this model.\n"
    det = results["is_deterministic"]
    eps = results.get("exploration_rate")
    if det:
        policy_text = "deterministic (greedy: ε = 0 for value-based agents, the mode for PPO)"
    elif eps is not None:
        policy_text = f"stochastic: ε-greedy with ε = {eps}"
    else:
        policy_text = "stochastic: actions sampled from the policy"
    body = f"""
# **{algo_class}** agent ({arch}) playing **{env_id}**

An sb3_gap agent: Stable-Baselines3 `{algo_class}` with the pixel encoder φ, bottleneck and dense
layers ψ of *Mind the GAP! The Challenges of Scale in Pixel-based Deep Reinforcement Learning*
(Sokar & Castro, 2025).

## Evaluation

**mean_reward = {score}** over **{results["n_eval_episodes"]}** episodes of `{env_id}`, measured with
`stable_baselines3.common.evaluation.evaluate_policy`; policy {policy_text}; env seed {results.get("seed")},
env wrappers as in `config.yml` (the Zoo's `create_test_env`), episode returns as reported by the `Monitor`
wrapper. Evaluated on {results["eval_datetime"]}; per-episode returns are in `results.json`.

## Parameters

{report}
## Usage

Pickle-free (nothing from the download is unpickled or executed):

```python
from sb3_gap.hub import load_from_hub

model = load_from_hub("{repo_id}")
action, _ = model.predict(obs, deterministic=True)
```

With the RL Zoo layout:

```bash
sb3-gap pull --repo-id {repo_id} -f downloads/
python -m rl_zoo3.enjoy --algo {algo} --env {env_id} -f downloads/ --gym-packages sb3_gap
```

## Files

{chr(10).join(f"- `{f}`" for f in sorted(files))}

`model.safetensors` + `sb3_gap.json` hold the policy weights and a plain-data config: `load_from_hub`
and `sb3-gap pull` use them by default. The `.zip` is the Stable-Baselines3 save file; loading it
unpickles code, so sb3_gap only does that with `allow_pickle=True` / `--allow-pickle`.
{"Not carried by the pickle-free files (defaults are used when training continues): " + ", ".join(f"`{a}`" for a in dropped_attrs) if dropped_attrs else ""}

## Network (`policy_kwargs`)

```python
{pformat(policy_kwargs)}
```

## Hyperparameters

```python
{pformat(hyperparams)}
```
"""
    if env_kwargs:
        body += f"""
## Environment arguments

```python
{pformat(env_kwargs)}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
