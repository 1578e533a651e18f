"""The commands and Python snippets of README.md and docs/*.md, as data: extraction and the substitution table.

Shared by ``tools/check_docs.py`` (runs every item with tiny budgets) and ``tests/test_docs.py`` (the fast
drift guard: every command parses with its real argument parser, every snippet compiles and its ``sb3_gap``
imports resolve, every referenced path and env id exists). Nothing here runs anything.

What counts as an item:

* every line (``\\``-continuations joined, ``#`` comments dropped) of a fenced ```` ```bash ````, ``sh``,
  ``console`` or ``shell`` block, and of an untagged block whose lines all start with a known command
  (:data:`COMMAND_PREFIXES`); untagged blocks of output and tables are not items;
* every inline code span that starts with a command prefix, unless it is listed in :data:`FRAGMENTS`
  (a command *named* in prose, such as ``sb3-gap report``, rather than a command to run);
* every ```` ```python ```` block;
* ```` ```yaml ```` blocks are checked by the fast test (their ``policy_kwargs`` strings parse) and, when
  :data:`YAML_FILES` names them, written to that file before the commands of their document run.

How an item runs is decided by :data:`OVERRIDES` (first matching pattern): skipped with a reason, replaced
by a concrete command (placeholders filled), or given setup steps; then the budget rules of
:func:`budget_argv` / :data:`PY_BUDGET` shrink step counts. The fast test fails when a new command or
inline span appears that these tables do not cover in a known way, or when an entry matches nothing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Where documented commands come from.
DOC_GLOBS = ("README.md", "docs/*.md")

SHELL_LANGS = ("bash", "sh", "console", "shell")
#: First words (or ``VAR=``) of a line that make an untagged block or an inline span a command.
COMMAND_PREFIXES = (
    "python ", "python3 ", ".venv/bin/python ", "sb3-gap ", "make ", "flock ", "PYTHONPATH=", "OMP_NUM_THREADS=",
    "cd ", "pip ", "apt-get ", "cp ", "createdb ", "tensorboard ", "hf ",
)  # fmt: skip
#: Placeholder used for ``<user>`` in Hub repo ids (a user of the loopback fake Hub).
HUB_USER = "docs-check"

#: Inline code spans that start like a command but *name* one in prose (not runnable as written).
FRAGMENTS: dict[str, str] = {
    "python -m rl_zoo3.train --algo rainbow ...": "names the Zoo entry point; the runnable forms are in the Zoo block below",
    "python -m rl_zoo3.train --conf-file": "names how rl_zoo3 reads the YAML",
    "apt-get": "names the tool",
    "sb3-gap sweep": "names the command",
    "sb3-gap report": "names the command",
    "sb3-gap pull": "names the command",
    "sb3-gap push": "names the command",
    "sb3-gap push|pull: error: ...": "the form of an error message",
    "sb3-gap <cmd>: error: ...": "the form of an error message",
    "sb3-gap gradcam MODEL.zip --algo {dqn,qrdqn,ppo,rainbow}": "synopsis; the runnable forms are in the gradcam block",
    "python -m sb3_gap.train": "names the module; `python -m sb3_gap.train ...` takes rl_zoo3.train's arguments",
    "flock /tmp/sb3gap.cpu": "names the machine's CPU lock",
    "PYTHONPATH": "names the variable",
    "hf auth login": "names huggingface_hub's login command",
    "python tools/check_docs.py": "the docs check itself",
}

#: Commands that are not run by tools/check_docs.py, with the reason; the fast test still parses those it can.
SKIP_INSTALL = "installs packages or changes the environment (network, root); the checker runs inside the installed venv"


@dataclass
class Override:
    """
    How one documented item runs, matched by ``pattern`` (a regex searched in the item's text).

    :param skip: Not run, with this reason (the fast test still parses it unless ``parse`` is False)
    :param run: Replacement text (shell line or Python source) to run instead; ``{user}`` is :data:`HUB_USER`
    :param parse_as: Concrete text for the fast test's parse check (placeholders filled) when ``run`` differs
    :param setup: Names of setup steps (``tools/check_docs.py`` ``SETUPS``) to run first, once per document
    :param prelude: Python source run before a snippet (names the snippet uses but does not define)
    :param parse: False for text the fast test cannot parse at all (not a command of ours)
    """

    pattern: str
    skip: str | None = None
    run: str | None = None
    parse_as: str | None = None
    setup: tuple[str, ...] = ()
    prelude: str = ""
    parse: bool = True


_ATARI_ENV = 'from sb3_gap.envs import make_atari_vec_env\nenv = make_atari_vec_env("Pong", protocol="Dopamine", n_envs=1, seed=0)\n'
_SMALL_QRDQN = (
    "from sb3_contrib import QRDQN\nfrom sb3_gap import policy_kwargs\n"
    'model = QRDQN("CnnPolicy", "MinAtar/Breakout-v1", buffer_size=1000, learning_starts=16, batch_size=8, '
    'policy_kwargs=policy_kwargs(bottleneck="gap"))\nmodel.learn(32)\nobs = model.replay_buffer.sample(16).observations\n'
)
_SMALL_DQN = (
    "from stable_baselines3 import DQN\nfrom sb3_gap import policy_kwargs\n"
    'model = DQN("CnnPolicy", "MinAtar/Breakout-v1", buffer_size=1000, learning_starts=16, batch_size=8, '
    'policy_kwargs=policy_kwargs(bottleneck="gap"))\nmodel.learn(32)\n'
)

#: First match wins. Patterns are searched in the item text (whitespace-normalised).
OVERRIDES: list[Override] = [
    # --- installation and the environment itself
    Override(r"^make test\b", skip="the whole test suite (CI runs it through .ci/run); the docs check runs single tests"),
    Override(r"^make install\b", skip=SKIP_INSTALL),
    Override(r"^make docs\b", skip="builds the documentation site from the whole repository; tests/test_docs_site.py builds it in the test suite"),
    Override(r"^python -m venv \.venv", skip=SKIP_INSTALL, parse=False),
    Override(r"^pip install", skip=SKIP_INSTALL, parse=False),
    Override(r"^apt-get", skip=SKIP_INSTALL, parse=False),
    Override(
        r"^cp sb3_gap_zoo\.pth",
        skip="copies into site-packages (a from-source set-up step); the installed hook is tested by tests/test_zoo.py",
        parse=False,
    ),
    Override(r"^createdb ", skip="needs a PostgreSQL server (docs/sweeps.md records the check run with PostgreSQL 15)", parse=False),
    Override(r"^URL=postgresql|^ARGS=|\$ARGS|\$URL|^sleep 12; kill", skip="the recorded PostgreSQL check (needs a PostgreSQL server)", parse=False),
    Override(r"postgresql(\+\w+)?://", skip="needs a PostgreSQL server (docs/sweeps.md records the check run with PostgreSQL 15)", parse_as=None),
    Override(
        r"^python tests/postgres_server\.py", skip="starts a PostgreSQL server until Ctrl-C; tests/test_postgres.py runs the same one", parse=False
    ),
    Override(
        r"^D=\$\(mktemp|^runuser |^PGPASSWORD=", skip="a PostgreSQL server by hand (root); tests/test_postgres.py runs the same one", parse=False
    ),
    Override(r"^tensorboard ", skip="starts a web server", parse=False),
    # --- `make demo` is the demo module behind the venv stamp: check that make runs exactly that, then run it with the budget
    Override(r"^make demo\b", run="make -n demo | grep -qx '.venv/bin/python -m sb3_gap.sweep.demo' && python -m sb3_gap.sweep.demo"),
    # --- long-running by design
    Override(
        r"^sb3-gap sweep --preset minatar-(scaling|deep|rr)",
        skip="resumes a committed MinAtar study in results/ (minatar_scaling: 150k steps, minatar_deep and minatar_rr: 100k) "
        "(hours; a smaller budget would be refused as a changed study); the demo preset runs the same code",
    ),
    # --- placeholders
    Override(
        r"^python -m sb3_gap\.train \.\.\.",
        skip="`...` stands for rl_zoo3.train's arguments",
        parse_as="python -m sb3_gap.train --algo rainbow --env MinAtar/Breakout-v1 --conf-file zoo_configs/rainbow.yml",
    ),
    Override(
        r"^sb3-gap push --algo rainbow --env MinAtar/Breakout-v1 -f logs/ --repo-id <user>/rainbow-gap-breakout \[",
        run="sb3-gap push --algo rainbow --env MinAtar/Breakout-v1 -f logs/ --repo-id {user}/rainbow-gap-breakout-full "
        "--exp-id 1 --load-best --n-eval-episodes 1 --stochastic --seed 0 --no-video --private",
        parse_as="sb3-gap push --algo rainbow --env MinAtar/Breakout-v1 -f logs/ --repo-id u/r --exp-id 1 --load-best "
        "--n-eval-episodes 10 --stochastic --seed 0 --no-video --private",
        setup=("zoo_rainbow_minatar",),
    ),
    Override(
        r"^sb3-gap pull --repo-id <user>/rainbow-gap-breakout -f downloads/ \[",
        run="sb3-gap pull --repo-id {user}/rainbow-gap-breakout-full -f downloads/ --algo rainbow --env MinAtar/Breakout-v1 "
        "--revision main --allow-pickle",
        parse_as="sb3-gap pull --repo-id u/r -f downloads/ --algo rainbow --env MinAtar/Breakout-v1 --revision main --allow-pickle",
    ),
    Override(r"^sb3-gap push .*<user>", setup=("zoo_rainbow_minatar",)),
    Override(r"^sb3-gap gradcam model\.zip --algo qrdqn", setup=("model_zip_qrdqn",)),
    Override(r"^sb3-gap gradcam model\.zip --algo dqn --obs frame\.npy", setup=("model_zip_dqn", "frame_npy")),
    Override(r"^sb3-gap report --storage sqlite:///runs/a\.db --study scaling scaling_more_seeds", setup=("studies_a_b",)),
    Override(
        r"^sb3-gap report --storage sqlite:///runs/atari_methods_",
        skip="merges the four Fig. 10 studies (hours of Atari runs each); the same several-storage report runs on tiny "
        "studies in docs/sweeps.md (sb3-gap report --storage sqlite:///runs/a.db sqlite:///runs/b.db ...)",
    ),
    Override(r"^sb3-gap report --storage sqlite:///runs/a\.db sqlite:///runs/b\.db", setup=("studies_a_b",)),
    Override(r"^sb3-gap report --storage sqlite:///a/runs/demo\.db sqlite:///b/runs/demo\.db", setup=("demo_dbs_a_b",)),
    Override(r"^sb3-gap report --storage sqlite:///results/minatar_scaling/study\.db", setup=("study_db_copy",)),
    Override(r"^python -m rl_zoo3\.enjoy --algo dqn --env MinAtar/Breakout-v1 -f downloads/", setup=("pulled_dqn",)),
    # --- Python snippets: names they use from the surrounding text
    Override(r"^kw = dict\(\n    features_extractor_class=sb3_gap\.ConvExtractor", prelude="import sb3_gap\n"),
    Override(r"^from sb3_gap\.diagnostics import DiagnosticsCallback, ReDoCallback, dormant_fractions\nmodel\.learn", prelude=_SMALL_QRDQN),
    Override(r"^from stable_baselines3 import DQN\nfrom sb3_gap\.replay import FrameReplayBuffer\n\n# env: 4 stacked", prelude=_ATARI_ENV),
    Override(r"^from sb3_gap import Rainbow, policy_kwargs\nfrom sb3_gap\.rainbow import rainbow_preset\n\nmodel = Rainbow", prelude=_ATARI_ENV),
    Override(r"^from sb3_gap\.hub import load_from_hub, pull_from_hub, push_to_hub", prelude=_SMALL_DQN, setup=("zoo_dqn_minatar", "hub_zoo_repo")),
    Override(
        r"^from sb3_gap\.hub import load_from_hub\nmodel = load_from_hub\(\"<user>/rainbow-gap-breakout\"\)",
        setup=("zoo_rainbow_minatar", "pushed_rainbow"),
    ),
]

#: ```yaml blocks written to a file (in the document's work folder) before its commands run: (doc, text in block) -> file.
YAML_FILES: dict[tuple[str, str], str] = {("docs/diagnostics.md", "sb3_gap.diagnostics.ReDoCallback"): "diag.yml"}

#: Step budgets of Python snippets: (regex, replacement), applied in order.
PY_BUDGET: list[tuple[str, str]] = [
    (r"\.learn\(\s*[\d_]+", ".learn(64"),
    (r"n_eval_episodes=\d+", "n_eval_episodes=1"),
    (r"steps=500_000", "steps=64, eval_freq=32, eval_episodes=1"),
    (r"seeds=\d+", "seeds=1"),
    (r"width_scales=\[1, 4\]", "width_scales=[1]"),
    (r"workers=\d+", "workers=1"),
]

#: Shell budgets: program -> (options set to a value (added when absent), options cut to their first value).
#: Programs are the first words after ``python -m`` / ``python`` / ``sb3-gap`` (see :func:`program_of`).
BUDGETS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "rl_zoo3.train": (
        {"-n": "64", "--eval-freq": "-1", "--n-trials": "1", "--n-startup-trials": "1", "--n-evaluations": "1", "--eval-episodes": "1"},
        (),
    ),
    "sb3_gap.train": ({"-n": "64", "--eval-freq": "-1"}, ()),
    "rl_zoo3.enjoy": ({"-n": "20", "--no-render": ""}, ()),
    "sb3-gap sweep": ({"--steps": "64", "--eval-freq": "32", "--eval-episodes": "1", "--seeds": "1", "--workers": "1"}, ("--width-scales",)),
    "sb3_gap.sweep.demo": ({"--steps": "64", "--eval-freq": "32", "--eval-episodes": "1", "--workers": "1"}, ()),
    "sb3-gap gradcam": ({"--steps": "2"}, ()),
    "sb3-gap push": ({"--n-eval-episodes": "1", "--no-video": ""}, ()),
    "examples": ({"--steps": "64"}, ()),
    "benchmarks/diagnostics_overhead.py": ({"--updates": "2", "--fill": "100"}, ()),
    "benchmarks/env_throughput.py": ({"--steps": "20", "--n-envs": "2"}, ()),
    "benchmarks/extractor_cost.py": ({"--encoders": "nature", "--bottlenecks": "gap", "--scales": "1", "--repeats": "1"}, ()),
    "benchmarks/rainbow_throughput.py": (
        {"--steps": "8", "--pong-steps": "8", "--learning-starts": "8", "--networks": "nature-x1-flatten impala-x1-gap"},
        (),
    ),
    "benchmarks/throughput_floor.py": ({"--n": "1", "--reps": "1", "--networks": "nature-x1-flatten impala-x1-gap"}, ()),
    "benchmarks/replay_memory.py": ({"--n": "2000", "--repeats": "5"}, ()),
    "benchmarks/update_cost.py": ({"--quick": "", "--fill": "64", "--rounds": "1", "--n": "1"}, ("--cases",)),
}
#: Programs whose runs depend on nothing but their arguments: an identical line already run (in any document) is not rerun.
STATELESS = ("benchmarks/", "examples", "sb3_gap.sweep.demo", "sb3-gap sweep --preset demo", "make demo")
#: rl_zoo3.train of PPO: one rollout of the Zoo's n_envs x n_steps (Procgen: 64 x 256 steps, then 3 epochs of Impala x4)
#: is the smallest run whatever ``-n`` says, so the rollout is shrunk too (``--hyperparams`` entries appended).
PPO_ROLLOUT = ("n_envs:2", "n_steps:32", "batch_size:64")
#: Options whose budget is applied only when the command is run with ``-optimize`` (rl_zoo3.train).
OPTIMIZE_ONLY = ("--n-trials", "--n-startup-trials", "--n-evaluations", "--eval-episodes")


@dataclass
class DocItem:
    """One documented command line or Python snippet."""

    kind: str  # "shell" | "python" | "yaml"
    doc: str  # path relative to the repository
    line: int
    text: str
    inline: bool = False
    lang: str = ""

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def override(self) -> Override | None:
        """The first :data:`OVERRIDES` entry whose pattern matches this item (None: run as written, with budgets)."""
        return next((o for o in OVERRIDES if re.search(o.pattern, self.text, re.M)), None)


def doc_files(repo: Path = REPO) -> list[Path]:
    """README.md and docs/*.md, in that order."""
    out: list[Path] = []
    for pattern in DOC_GLOBS:
        out += sorted(repo.glob(pattern))
    return out


_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
_INLINE = re.compile(r"(`+)(.+?)\1")


def logical_lines(block: str) -> list[tuple[int, str]]:
    """``(offset, line)`` of a shell block: ``\\`` continuations joined, blank and comment-only lines dropped."""
    out: list[tuple[int, str]] = []
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        stripped = strip_comment(text).strip()
        if stripped:
            out.append((start, stripped))
    return out


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` outside quotes, after whitespace or at the start)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def is_command(text: str) -> bool:
    return text.startswith(COMMAND_PREFIXES)


def extract(repo: Path = REPO) -> list[DocItem]:
    """Every item of the documentation, in document order (see the module docstring)."""
    items: list[DocItem] = []
    for path in doc_files(repo):
        doc = str(path.relative_to(repo))
        text = path.read_text(encoding="utf-8")
        found: list[DocItem] = []
        for m in _FENCE.finditer(text):
            lang, body = m.group(1).lower(), m.group(2)
            first = text.count("\n", 0, m.start()) + 2  # line of the block's first content line
            if lang == "python":
                found.append(DocItem("python", doc, first, body, lang=lang))
            elif lang in ("yaml", "yml"):
                found.append(DocItem("yaml", doc, first, body, lang=lang))
            elif lang in SHELL_LANGS or (lang == "" and logical_lines(body) and all(is_command(t) for _, t in logical_lines(body))):
                found += [DocItem("shell", doc, first + off, line, lang=lang) for off, line in logical_lines(body)]
        prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in _INLINE.finditer(prose):
            span = m.group(2).strip()
            if is_command(span) or span in FRAGMENTS:
                found.append(DocItem("shell", doc, prose.count("\n", 0, m.start()) + 1, span, inline=True))
        items += sorted(found, key=lambda it: it.line)
    return items


# ---------------------------------------------------------------------------------------------- shell words
@dataclass
class Simple:
    """One simple command of a shell line: ``VAR=value ... [flock FILE] [cd DIR] argv``."""

    assignments: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)


_OPERATORS = ("&&", "||", ";", "&", "|")


def split_line(line: str) -> list[Simple | str]:
    """A shell line as simple commands and the operators between them (``&&``, ``;``, ``&``...)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    out: list[Simple | str] = []
    current = Simple()
    for token in lexer:
        if token in _OPERATORS:
            out += [current, token]
            current = Simple()
        elif not current.argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            current.assignments.append(token)
        else:
            current.argv.append(token)
    out.append(current)
    return [part for part in out if not isinstance(part, Simple) or part.argv or part.assignments]


def unwrap(argv: list[str]) -> list[str]:
    """``argv`` without a leading ``flock FILE`` (the project's CPU lock)."""
    while len(argv) >= 2 and argv[0] == "flock":
        argv = argv[2:]
    return argv


def program_of(argv: list[str]) -> str:
    """The key of :data:`BUDGETS` for ``argv`` (``rl_zoo3.train``, ``sb3-gap sweep``, ``benchmarks/x.py``, ``make demo``...)."""
    argv = unwrap(argv)
    if not argv:
        return ""
    exe = Path(argv[0]).name
    if exe.startswith("python"):
        if len(argv) >= 3 and argv[1] == "-m":
            return argv[2]
        if len(argv) >= 2:
            return "examples" if argv[1].startswith("examples/") else argv[1]
        return exe
    if exe == "sb3-gap":
        return f"sb3-gap {argv[1]}" if len(argv) > 1 else exe
    if exe == "make":
        return f"make {argv[1]}" if len(argv) > 1 else exe
    return exe


def budget_argv(argv: list[str]) -> list[str]:
    """``argv`` with the step budgets of :data:`BUDGETS` (values replaced, or appended when absent)."""
    prog = program_of(argv)
    if prog == "sb3-gap demo":
        prog = "sb3_gap.sweep.demo"
    if prog == "sb3-gap sweep" and "--preset" in argv:
        prog = "sb3_gap.sweep.demo" if argv[argv.index("--preset") + 1] == "demo" else prog
    if prog not in BUDGETS:
        return list(argv)
    setv, first_only = BUDGETS[prog]
    out = list(argv)
    optimize = "-optimize" in out or "--optimize-hyperparameters" in out
    for opt, value in setv.items():
        if prog == "rl_zoo3.train" and opt in OPTIMIZE_ONLY and not optimize:
            continue
        if prog == "rl_zoo3.train" and opt == "--eval-freq" and optimize:
            continue
        values = value.split() if value else []
        if opt in out:
            i = out.index(opt) + 1
            j = i
            while j < len(out) and not out[j].startswith("-"):
                j += 1
            out[i:j] = values
        else:
            out += [opt, *values]
    if prog == "rl_zoo3.train" and "--algo" in out and out[out.index("--algo") + 1] == "ppo":
        if "--hyperparams" in out:
            i = out.index("--hyperparams") + 1
            while i < len(out) and not out[i].startswith("-"):
                i += 1
            out[i:i] = list(PPO_ROLLOUT)
        else:
            out += ["--hyperparams", *PPO_ROLLOUT]
    for opt in first_only:
        if opt in out:
            i = out.index(opt) + 1
            j = i + 1
            while j < len(out) and not out[j].startswith("-"):
                j += 1
            del out[i + 1 : j]
    return out


def join_line(parts: list[Simple | str]) -> str:
    """Inverse of :func:`split_line` (words quoted for bash)."""
    words: list[str] = []
    for part in parts:
        if isinstance(part, str):
            words.append(part)
        else:
            words += [f"{a.split('=', 1)[0]}={shlex.quote(a.split('=', 1)[1])}" for a in part.assignments]
            words += [shlex.quote(w) for w in part.argv]
    return " ".join(words)


def fill_placeholders(text: str, repo: str | Path = REPO) -> str:
    """``<user>`` (and ``{user}`` in override text) -> :data:`HUB_USER`; ``<repo>`` -> ``repo``."""
    return text.replace("<user>", HUB_USER).replace("{user}", HUB_USER).replace("<repo>", str(repo))
