"""``sb3-gap push`` / ``sb3-gap pull``: the Zoo-style command lines of :mod:`sb3_gap.hub`."""

from __future__ import annotations

import argparse
import logging
import sys

from sb3_gap.algos import ALGOS
from sb3_gap.checks import MissingPackage, Refused
from sb3_gap.envs.protocols import check_env_registered


def _setup(verbose: int) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)


def _fail(command: str, e: BaseException) -> None:
    """Print ``sb3-gap <command>: error: <first line>`` (never a traceback) and exit 1."""
    text = str(e).strip() or type(e).__name__
    print(f"sb3-gap {command}: error: {text.splitlines()[0]}", file=sys.stderr)
    raise SystemExit(1)


def push_main(argv: list[str] | None = None) -> None:
    """``sb3-gap push --algo rainbow --env <id> -f logs/ --repo-id <user>/<name>``"""
    p = argparse.ArgumentParser(prog="sb3-gap push", description="Evaluate a Zoo run and upload it to the Hugging Face Hub in one commit.")
    p.add_argument("--algo", required=True, choices=sorted(ALGOS), help="RL algorithm (Zoo name)")
    p.add_argument("--env", required=True, help="Environment id, e.g. MinAtar/Breakout-v1")
    p.add_argument("-f", "--folder", required=True, help="Zoo log folder (contains <algo>/<env>_<N>/)")
    p.add_argument("--exp-id", type=int, default=0, help="Experiment id (default 0: latest)")
    p.add_argument("--repo-id", required=True, help="<user or org>/<name> on the Hub")
    p.add_argument("--load-best", action="store_true", help="Push best_model.zip instead of the final model")
    p.add_argument("--n-eval-episodes", type=int, default=10, help="Evaluation episodes (default 10)")
    p.add_argument("--stochastic", action="store_true", help="Evaluate with the exploration policy instead of greedy actions")
    p.add_argument("--seed", type=int, default=0, help="Evaluation env seed")
    p.add_argument("--no-video", action="store_true", help="Do not record replay.mp4")
    p.add_argument("--video-length", type=int, default=1000, help="Replay video length in steps")
    p.add_argument("--private", action="store_true", help="Create the repository private")
    p.add_argument("-m", "--commit-message", default="Upload sb3_gap agent")
    p.add_argument("--gym-packages", nargs="*", default=[], help="Modules to import to register envs")
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)
    _setup(args.verbose)
    import importlib

    from sb3_gap.hub import push_to_hub

    try:
        for module in args.gym_packages:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise MissingPackage(f"--gym-packages {module}: cannot import it ({e})") from None
        check_env_registered(args.env)  # the evaluation and the video make it
        info = push_to_hub(
            args.folder,
            args.repo_id,
            algo=args.algo,
            env_id=args.env,
            exp_id=args.exp_id,
            load_best=args.load_best,
            n_eval_episodes=args.n_eval_episodes,
            deterministic=not args.stochastic,
            seed=args.seed,
            video=not args.no_video,
            video_length=args.video_length,
            commit_message=args.commit_message,
            private=True if args.private else None,
        )
    except Refused as e:  # sb3_gap's refusals (HubError included); anything else is a bug: its traceback
        _fail("push", e)
    print(f"Pushed {len(info.files)} files to {info.repo_id} (mean_reward {info.mean_reward:.2f} +/- {info.std_reward:.2f}): {info.commit_url}")


def pull_main(argv: list[str] | None = None) -> None:
    """``sb3-gap pull --repo-id <user>/<name> -f downloads/``"""
    p = argparse.ArgumentParser(prog="sb3-gap pull", description="Download an agent from the Hub into a new Zoo run folder.")
    p.add_argument("--repo-id", required=True, help="<user or org>/<name> on the Hub")
    p.add_argument("-f", "--folder", required=True, help="Zoo log folder to create the run in")
    p.add_argument("--algo", choices=sorted(ALGOS), help="RL algorithm (default: from the repository)")
    p.add_argument("--env", help="Environment id (default: from the repository)")
    p.add_argument("--exp-id", type=int, default=0, help="Run id to create (default 0: next free)")
    p.add_argument("--revision", help="Branch, tag or commit")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="Accept repositories without pickle-free weights (their SB3 zip is unpickled by enjoy: trusted authors only)",
    )
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)
    _setup(args.verbose)
    from sb3_gap.hub import pull_from_hub

    try:
        info = pull_from_hub(
            args.repo_id,
            args.folder,
            algo=args.algo,
            env_id=args.env,
            exp_id=args.exp_id,
            allow_pickle=args.allow_pickle,
            revision=args.revision,
        )
    except Refused as e:  # sb3_gap's refusals (HubError included); anything else is a bug: its traceback
        _fail("pull", e)
    print(f"Saved {info.repo_id}@{info.revision[:8]} to {info.log_path} ({info.path} path)")
    print(f"Run it: python -m rl_zoo3.enjoy --algo {info.algo} --env {info.env_id} -f {args.folder} --gym-packages sb3_gap")
