"""Run every command and Python snippet of README.md and docs/*.md, as written, with tiny budgets.

    .venv/bin/python tools/check_docs.py                       # everything (~tens of minutes on 2 cores)
    .venv/bin/python tools/check_docs.py --list                # what would run, skip or be rewritten, and how
    .venv/bin/python tools/check_docs.py --only docs/zoo.md    # one document (or README.md:154, or text in the command)
    .venv/bin/python tools/check_docs.py --only docs/hub.md --workdir /tmp/dc   # keep set-ups between pieces

The items and the substitution table live in ``tools/docs_commands.py`` (shared with ``tests/test_docs.py``,
the fast drift guard of the test suite). Each document runs in its own work folder, which mirrors the
repository (``zoo_configs/``, ``examples/``, ``benchmarks/``, ``sb3_gap/``, ``tests/``, ``.venv`` are linked;
``docs/`` and ``README.md`` are copied, since ``benchmarks/extractor_cost.py --out docs/benchmarks.md``
rewrites its file), items in document order, so a ``pull`` finds what the ``push`` above it uploaded.
What is changed before running, and nothing else:

* step budgets (``tools/docs_commands.py``: ``BUDGETS`` for command lines, ``PY_BUDGET`` for snippets), e.g.
  ``--steps 500000`` -> ``--steps 64``, ``--seeds 3`` -> ``1``, ``--workers 2`` -> ``1``, the first
  ``--width-scales`` value only, ``model.learn(1_000_000`` -> ``model.learn(64``;
* ``flock /tmp/sb3gap.cpu`` is dropped (the machine's CPU lock; the tiny runs should not queue behind a study);
* placeholders: ``<user>`` is a user of the loopback fake Hub (``tests/fake_hub.py``; ``HF_ENDPOINT`` and
  ``HF_TOKEN`` point at it, so no command reaches the network), ``<repo>`` is the work folder;
* ``OVERRIDES``: commands that cannot run here (installation, PostgreSQL, the hours-long study) are skipped
  with their reason; commands with optional-flag synopses run with concrete flags; names a snippet takes
  from the surrounding text (``env``, ``model``, ``obs``) get a small prelude; set-up steps
  (:data:`SETUPS`) create what a command reads (a Zoo run in ``logs/``, ``model.zip``, study databases).

Exit status 1 if any item fails; the failing items' output tails are printed, full logs are in the work folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_commands import (  # noqa: E402
    HUB_USER,
    PY_BUDGET,
    REPO,
    STATELESS,
    YAML_FILES,
    DocItem,
    Simple,
    budget_argv,
    extract,
    fill_placeholders,
    join_line,
    program_of,
    split_line,
    unwrap,
)

LINKED = ("zoo_configs", "examples", "benchmarks", "sb3_gap", "tests", "tools", ".venv", "setup.py", "Makefile",
          "sb3_gap_zoo_hook.py", "sb3_gap_zoo.pth", "MANIFEST.in")  # fmt: skip
COPIED = ("docs", "README.md")
ZOO_TRAIN = (
    "python -m rl_zoo3.train --conf-file zoo_configs/{algo}.yml --algo {algo} --env MinAtar/Breakout-v1 -n 64 --eval-freq 32 --eval-episodes 1"
)
_TINY_SWEEP = ("sb3-gap sweep --algo dqn --envs MinAtar/Breakout-v1 --bottlenecks gap --steps 64 --eval-freq 32 --eval-episodes 1 "
               "--no-progress --workers 1")  # fmt: skip

_SAVE_MODEL = """
import gymnasium as gym, numpy as np
import sb3_gap
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
cls = {{"dqn": DQN, "qrdqn": QRDQN}}["{algo}"]
cls("CnnPolicy", "MinAtar/Breakout-v1", buffer_size=64, policy_kwargs=sb3_gap.policy_kwargs(bottleneck="gap")).save("model.zip")
"""
_FRAME_NPY = """
import gymnasium as gym, numpy as np
import sb3_gap
obs, _ = gym.make("MinAtar/Breakout-v1").reset(seed=0)
np.save("frame.npy", obs)
"""
# A repository as rl_zoo3 / huggingface_sb3 publish one: only the pickled SB3 zip and the Zoo's YAML files.
_ZOO_REPO = """
import io, os
import gymnasium as gym, ale_py
from huggingface_hub import CommitOperationAdd, HfApi
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
gym.register_envs(ale_py)
env = VecFrameStack(make_atari_env("SpaceInvadersNoFrameskip-v4", n_envs=1, seed=0), 4)
buf = io.BytesIO()
DQN("CnnPolicy", env, buffer_size=64).save(buf)
api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=os.environ["HF_TOKEN"])
api.create_repo("sb3/dqn-SpaceInvadersNoFrameskip-v4", exist_ok=True)
api.create_commit("sb3/dqn-SpaceInvadersNoFrameskip-v4", commit_message="zoo push", operations=[
    CommitOperationAdd("dqn-SpaceInvadersNoFrameskip-v4.zip", buf.getvalue()),
    CommitOperationAdd("config.yml", b"!!python/object/apply:collections.OrderedDict\\n- - - policy\\n    - CnnPolicy\\n"),
    CommitOperationAdd("args.yml", b"env_kwargs: null\\n"), CommitOperationAdd("env_kwargs.yml", b"{}\\n")])
"""
_COPY_STUDY = "copy_study_db"  # done in-process (sqlite3 backup: a consistent copy of a database in use)


@dataclass
class Setup:
    """A set-up step: its dependencies, then shell lines and/or Python sources run in the work folder."""

    needs: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()
    python: tuple[str, ...] = ()
    special: str = ""


SETUPS: dict[str, Setup] = {
    "zoo_rainbow_minatar": Setup(shell=(ZOO_TRAIN.format(algo="rainbow"),)),
    "zoo_dqn_minatar": Setup(shell=(ZOO_TRAIN.format(algo="dqn"),)),
    "model_zip_qrdqn": Setup(python=(_SAVE_MODEL.format(algo="qrdqn"),)),
    "model_zip_dqn": Setup(python=(_SAVE_MODEL.format(algo="dqn"),)),
    "frame_npy": Setup(python=(_FRAME_NPY,)),
    "hub_zoo_repo": Setup(python=(_ZOO_REPO,)),
    "pushed_rainbow": Setup(
        needs=("zoo_rainbow_minatar",),
        shell=(
            f"sb3-gap push --algo rainbow --env MinAtar/Breakout-v1 -f logs/ --repo-id {HUB_USER}/rainbow-gap-breakout --n-eval-episodes 1 --no-video",
        ),
    ),
    "pulled_dqn": Setup(
        needs=("zoo_dqn_minatar",),
        shell=(
            f"sb3-gap push --algo dqn --env MinAtar/Breakout-v1 -f logs/ --repo-id {HUB_USER}/dqn-gap-breakout --n-eval-episodes 1 --no-video",
            f"sb3-gap pull --repo-id {HUB_USER}/dqn-gap-breakout -f downloads/",
        ),
    ),
    "studies_a_b": Setup(
        shell=(
            f"{_TINY_SWEEP} --storage sqlite:///runs/a.db --study scaling",
            f"{_TINY_SWEEP} --storage sqlite:///runs/a.db --study scaling_more_seeds --seed-list 1",
            f"{_TINY_SWEEP} --storage sqlite:///runs/a.db --study s1",
            f"{_TINY_SWEEP} --storage sqlite:///runs/b.db --study s2",
        )
    ),
    "demo_dbs_a_b": Setup(
        shell=(
            "python -m sb3_gap.sweep.demo --bottlenecks gap --steps 64 --eval-freq 32 --eval-episodes 1 --workers 1 --no-progress "
            "--storage sqlite:///a/runs/demo.db --out a/runs --report ''",
            "python -m sb3_gap.sweep.demo --algo rainbow --study demo_rainbow --bottlenecks gap --steps 64 --eval-freq 32 --eval-episodes 1 "
            "--workers 1 --no-progress --storage sqlite:///b/runs/demo.db --out b/runs --report ''",
        )
    ),
    "study_db_copy": Setup(special=_COPY_STUDY),
}


# ---------------------------------------------------------------------------------------------- preparing an item
def shell_to_run(item: DocItem, workdir: Path) -> str:
    """The bash line run for a shell item: override or text as written, placeholders filled, ``flock`` dropped, budgets applied."""
    override = item.override()
    text = override.run if override and override.run else item.text
    parts = split_line(fill_placeholders(text, workdir))
    out: list[Simple | str] = []
    for part in parts:
        if isinstance(part, Simple):
            part = Simple(part.assignments, budget_argv(unwrap(part.argv)))
        out.append(part)
    return join_line(out)


def python_to_run(item: DocItem) -> str:
    """The Python source run for a snippet: prelude + text with :data:`PY_BUDGET` applied, placeholders filled."""
    override = item.override()
    source = override.run if override and override.run else item.text
    for pattern, repl in PY_BUDGET:
        source = re.sub(pattern, repl, source)
    prelude = override.prelude if override else ""
    return fill_placeholders(prelude + source)


def plan(item: DocItem, workdir: Path) -> tuple[str, str]:
    """``(action, text)``: ``("skip", reason)``, ``("fragment", reason)``, ``("shell", line)`` or ``("python", source)``."""
    from docs_commands import FRAGMENTS

    if item.kind == "yaml":
        return "skip", "YAML fragment (the fast test parses its policy_kwargs; files named in YAML_FILES are written)"
    if item.inline and item.text in FRAGMENTS:
        return "fragment", FRAGMENTS[item.text]
    override = item.override()
    if override and override.skip:
        return "skip", override.skip
    if item.kind == "python":
        return "python", python_to_run(item)
    return "shell", shell_to_run(item, workdir)


# ---------------------------------------------------------------------------------------------- running
class Runner:
    """Runs the items of the documents in per-document work folders, with the fake Hub up."""

    def __init__(self, root: Path, env: dict[str, str], timeout: float) -> None:
        self.root = root
        self.env = env
        self.timeout = timeout
        self.results: list[tuple[DocItem, str, float, str]] = []
        self.passed: dict[str, str] = {}  # line run -> where it first passed

    def workdir(self, doc: str) -> Path:
        """The work folder of ``doc``: links to the repository's code, copies of the documents."""
        path = self.root / re.sub(r"[^\w.-]", "_", doc)
        if not path.exists():
            path.mkdir(parents=True)
            for name in LINKED:
                if (REPO / name).exists():
                    (path / name).symlink_to(REPO / name)
            for name in COPIED:
                src = REPO / name
                if src.is_dir():
                    shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("_build"))  # not a site `make docs` built
                else:
                    shutil.copy2(src, path / name)
            (path / "_logs").mkdir()
        return path

    def _run(self, args: list[str], cwd: Path, log: Path) -> tuple[bool, str]:
        start = time.time()
        try:
            proc = subprocess.run(args, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=self.timeout)  # fmt: skip
            out, ok = proc.stdout, proc.returncode == 0
            out += f"\n[exit code {proc.returncode}, {time.time() - start:.1f} s]"
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            out, ok = out + f"\n[timed out after {self.timeout:.0f} s]", False
        log.write_text(out)
        return ok, out

    def shell(self, line: str, cwd: Path, log: Path) -> tuple[bool, str]:
        return self._run(["bash", "-c", f"set -e -o pipefail\n{line}"], cwd, log)

    def python(self, source: str, cwd: Path, log: Path) -> tuple[bool, str]:
        script = log.with_suffix(".py")
        script.write_text(source)
        return self._run([str(REPO / ".venv" / "bin" / "python"), str(script)], cwd, log)

    def setup(self, name: str, cwd: Path) -> tuple[bool, str]:
        """Run set-up step ``name`` (and its dependencies) once per work folder."""
        marker = cwd / "_logs" / f"setup-{name}.done"
        if marker.exists():
            return True, ""
        step = SETUPS[name]
        for dep in step.needs:
            ok, out = self.setup(dep, cwd)
            if not ok:
                return ok, out
        if step.special == _COPY_STUDY:
            target = cwd / "results" / "minatar_scaling" / "study.db"
            target.parent.mkdir(parents=True, exist_ok=True)
            src = sqlite3.connect(f"file:{REPO / 'results' / 'minatar_scaling' / 'study.db'}?mode=ro", uri=True)
            dst = sqlite3.connect(target)
            with dst:
                src.backup(dst)
            src.close()
            dst.close()
        for i, line in enumerate(step.shell):
            ok, out = self.shell(line, cwd, cwd / "_logs" / f"setup-{name}-{i}.log")
            if not ok:
                return False, f"set-up {name!r} failed: {line}\n{out}"
        for i, source in enumerate(step.python):
            ok, out = self.python(source, cwd, cwd / "_logs" / f"setup-{name}-py{i}.log")
            if not ok:
                return False, f"set-up {name!r} failed\n{out}"
        marker.touch()
        return True, ""

    def run_doc(self, doc: str, items: list[DocItem], verbose: bool) -> None:
        cwd = self.workdir(doc)
        for (ydoc, needle), name in YAML_FILES.items():
            if ydoc == doc:
                block = next(it for it in extract() if it.doc == doc and it.kind == "yaml" and needle in it.text)
                (cwd / name).write_text(block.text)
        for item in items:
            action, text = plan(item, cwd)
            start = time.time()
            if action in ("skip", "fragment"):
                self.report(item, action.upper(), 0.0, text)
                continue
            if action == "shell" and text in self.passed and _stateless(text):
                self.report(item, "PASS", 0.0, f"{text}  (same line passed at {self.passed[text]})")
                continue
            override = item.override()
            ok, out = True, ""
            for name in override.setup if override else ():
                ok, out = self.setup(name, cwd)
                if not ok:
                    break
            if ok:
                log = cwd / "_logs" / f"line{item.line}.log"
                ok, out = self.shell(text, cwd, log) if action == "shell" else self.python(text, cwd, log)
            if ok and action == "shell":
                self.passed.setdefault(text, item.where)
            detail = text if action == "shell" else text.strip().splitlines()[-1]
            self.report(item, "PASS" if ok else "FAIL", time.time() - start, detail if ok and not verbose else f"{detail}\n{tail(out)}")

    def report(self, item: DocItem, status: str, seconds: float, detail: str) -> None:
        self.results.append((item, status, seconds, detail))
        first, *rest = detail.splitlines() or [""]
        print(f"{status:8} {item.where:32} {seconds:6.1f}s  {first}", flush=True)
        if status == "FAIL":
            print("\n".join("           " + line for line in rest), flush=True)


def _stateless(line: str) -> bool:
    """Whether ``line`` is one simple command of a :data:`~docs_commands.STATELESS` program."""
    parts = split_line(line)
    return (
        len(parts) == 1
        and isinstance(parts[0], Simple)
        and any(program_of(parts[0].argv).startswith(s) or " ".join(parts[0].argv).startswith(s) for s in STATELESS)
    )


def tail(text: str, n: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def select(items: list[DocItem], only: list[str]) -> list[DocItem]:
    """Items whose ``doc:line`` starts with, or whose text contains, one of ``only`` (all when empty)."""
    if not only:
        return items
    return [it for it in items if any(it.where == o or it.doc == o or (":" not in o and o in it.text) for o in only)]


def main(argv: list[str] | None = None) -> None:
    """Run the documented commands and snippets (see the module docstring)."""
    p = argparse.ArgumentParser(prog="tools/check_docs.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=[], help="doc files (README.md, docs/zoo.md), doc:line, or text contained in an item")
    p.add_argument("--list", action="store_true", help="print what would run (after substitutions) and exit")
    p.add_argument("--workdir", help="root of the per-document work folders (default: a new temporary folder); reuse it to keep set-ups")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per item (default 900: the 2-core machine may be busy)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the output tail of passing items too")
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error(f"--timeout must be > 0, got {args.timeout}")

    items = select(extract(), args.only)
    if not items:
        p.error(f"--only {args.only} matches no documented item; valid: README.md, docs/<name>.md, <doc>:<line> or text of a command")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sb3gap-docs-"))
    if args.list:
        for item in items:
            action, text = plan(item, root / "<doc>")
            print(f"{action.upper():8} {item.where:32} " + text.replace("\n", "\n" + " " * 42))
        return

    sys.path.insert(0, str(REPO / "tests"))
    from fake_hub import TEST_TOKEN, FakeHub

    root.mkdir(parents=True, exist_ok=True)
    print(f"work folders: {root}", flush=True)
    with FakeHub(TEST_TOKEN, max_requests=100_000) as hub:
        env = {
            **os.environ,
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(REPO / ".venv"),
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "HF_ENDPOINT": hub.endpoint,
            "HF_TOKEN": TEST_TOKEN,
            "HF_HOME": str(root / "hf-home"),
            "HF_HUB_CACHE": str(root / "hf-cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        runner = Runner(root, env, args.timeout)
        for doc in dict.fromkeys(it.doc for it in items):
            runner.run_doc(doc, [it for it in items if it.doc == doc], args.verbose)
    counts = {s: sum(1 for r in runner.results if r[1] == s) for s in ("PASS", "FAIL", "SKIP", "FRAGMENT")}
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped, {counts['FRAGMENT']} fragments; logs in {root}")
    raise SystemExit(1 if counts["FAIL"] else 0)


if __name__ == "__main__":
    main()
