"""The documentation cannot drift from the code (fast: nothing trains; ``tools/check_docs.py`` runs everything).

Every command of README.md and docs/*.md (``tools/docs_commands.py`` extracts them) parses with its real
argument parser (``parse_args`` is intercepted right after parsing, so nothing runs), every Python snippet
compiles and its ``sb3_gap`` imports resolve, every ``policy_kwargs`` string in the docs' YAML parses,
every referenced repository path exists and every env id is registered. The tables of
``tools/docs_commands.py`` must cover every command in a known way and hold no stale entries.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import runpy
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import docs_commands as dc  # noqa: E402

ITEMS = dc.extract()
SHELL = [it for it in ITEMS if it.kind == "shell" and not (it.inline and it.text in dc.FRAGMENTS)]
PYTHON = [it for it in ITEMS if it.kind == "python"]
YAML = [it for it in ITEMS if it.kind == "yaml"]
#: Programs whose parsers the parse check knows (see :func:`parse_command`).
PARSEABLE = ("rl_zoo3.train", "rl_zoo3.enjoy", "sb3_gap.train", "sb3_gap.sweep.demo", "pytest", "examples")
NOT_PARSED = ("cd",)  # checked otherwise: the directory exists


def _simple_commands(item: dc.DocItem) -> list[dc.Simple]:
    override = item.override()
    text = override.parse_as if override and override.parse_as else item.text
    return [p for p in dc.split_line(dc.fill_placeholders(text)) if isinstance(p, dc.Simple) and p.argv]


def _parse_checked(item: dc.DocItem) -> bool:
    override = item.override()
    return not (override and not override.parse)


class _Parsed(Exception):
    """Raised by the intercepted ``parse_args`` once the real parser has accepted the arguments."""


@pytest.fixture
def parse_only(monkeypatch):
    real = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)


def parse_command(argv: list[str], monkeypatch) -> None:
    """Run ``argv``'s entry point up to its ``parse_args`` (which raises :class:`_Parsed`), or check what it names."""
    argv = dc.unwrap(argv)
    prog = dc.program_of(argv)
    if prog == "cd":
        assert Path(argv[1]).is_dir(), f"cd {argv[1]}: no such directory"
        return
    if prog.startswith("make "):
        proc = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr.strip()}"
        return
    if prog == "pytest":
        paths = [a.split("::")[0] for a in argv[3:] if not a.startswith("-")]
        assert paths and all((REPO / p).exists() for p in paths), f"{' '.join(argv)}: missing test files {paths}"
        return
    args = argv[3:] if argv[1:2] == ["-m"] else argv[2:]
    if argv[0] == "sb3-gap":
        from sb3_gap.cli import main

        call = lambda: main(argv[1:])  # noqa: E731
    elif prog in ("rl_zoo3.train", "rl_zoo3.enjoy"):
        module = importlib.import_module(prog)
        monkeypatch.setattr(sys, "argv", [prog, *args])
        call = getattr(module, prog.split(".")[1] if prog.endswith("train") else "enjoy")
    elif prog in ("sb3_gap.train", "sb3_gap.sweep.demo"):
        call = lambda: importlib.import_module(prog).main(args)  # noqa: E731
    elif prog == "examples" or prog.startswith(("benchmarks/", "tools/")):
        path = REPO / argv[1]
        assert path.is_file(), f"{argv[1]} does not exist"
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        monkeypatch.syspath_prepend(str(path.parent))  # as `python path/x.py` does
        call = lambda: runpy.run_path(str(path), run_name="__main__")  # noqa: E731
    else:
        raise AssertionError(f"{' '.join(argv)}: no parse check for program {prog!r}; add one here or a skip in tools/docs_commands.py")
    with pytest.raises(_Parsed):
        call()


def test_tables_cover_the_docs_and_hold_no_stale_entries():
    assert len(SHELL) > 40 and len(PYTHON) > 8  # the extraction finds the docs' commands
    for override in dc.OVERRIDES:
        assert any(re.search(override.pattern, it.text, re.M) for it in ITEMS), f"OVERRIDES entry {override.pattern!r} matches no documented item"
    inline = {it.text for it in ITEMS if it.inline}
    for fragment in dc.FRAGMENTS:
        assert fragment in inline, f"FRAGMENTS entry {fragment!r} is no longer in the docs"
    for (doc, needle), _ in dc.YAML_FILES.items():
        assert any(it.doc == doc and needle in it.text for it in YAML), f"YAML_FILES entry {(doc, needle)} matches no YAML block"
    for budget_prog in dc.BUDGETS:
        if budget_prog.startswith("benchmarks/"):
            assert (REPO / budget_prog).is_file(), f"BUDGETS names {budget_prog}, which does not exist"


@pytest.mark.parametrize("item", SHELL, ids=lambda it: it.where)
def test_documented_command_parses(item, parse_only, monkeypatch):
    if not _parse_checked(item):
        assert item.override().skip, f"{item.where}: a command that is neither parsed nor skipped"
        return
    commands = _simple_commands(item)
    assert commands, f"{item.where}: {item.text!r} holds no command"
    for simple in commands:
        argv = dc.unwrap(simple.argv)
        if argv[0] in ("sleep", "kill", "wait"):
            continue
        if argv[:1] == ["python"] and argv[1:2] == ["-m"] and argv[2:3] == ["pytest"]:
            argv = ["python", "-m", "pytest", *argv[3:]]
        parse_command(argv, monkeypatch)


def test_budget_rules_shrink_only_the_budget():
    line = "sb3-gap sweep --algo rainbow --envs A B --width-scales 1 4 --seeds 3 --steps 500000 --workers 2 --study s"
    argv = dc.budget_argv(dc.split_line(line)[0].argv)
    assert argv == ["sb3-gap", "sweep", "--algo", "rainbow", "--envs", "A", "B", "--width-scales", "1", "--seeds", "1", "--steps", "64",
                    "--workers", "1", "--study", "s", "--eval-freq", "32", "--eval-episodes", "1"]  # fmt: skip
    zoo = dc.budget_argv(["python", "-m", "rl_zoo3.train", "--algo", "dqn", "--env", "E"])
    assert zoo[-4:] == ["-n", "64", "--eval-freq", "-1"] and "--n-trials" not in zoo
    assert dc.budget_argv(dc.unwrap(["flock", "/tmp/x", "python", "benchmarks/replay_memory.py", "--n", "200000"]))[2:] == [
        "--n", "2000", "--repeats", "5"]  # fmt: skip
    quoted = "python -m rl_zoo3.train --hyperparams policy_kwargs:\"'policy_kwargs(width_scale=4)'\" && echo ok"
    assert dc.split_line(dc.join_line(dc.split_line(quoted)))[0].argv == dc.split_line(quoted)[0].argv


def _imported_names(tree: ast.AST) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, alias.name) for alias in node.names]
    return out


@pytest.mark.parametrize("item", PYTHON, ids=lambda it: it.where)
def test_python_snippet_compiles_and_its_imports_resolve(item):
    override = item.override()
    source = (override.prelude if override else "") + item.text
    tree = ast.parse(source, filename=item.where)
    compile(tree, item.where, "exec")
    for module, name in _imported_names(tree):
        mod = importlib.import_module(module)
        if name is not None:
            assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}"), f"{item.where}: {module} has no {name}"
    import sb3_gap

    for node in ast.walk(tree):  # sb3_gap.<name> attribute uses
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sb3_gap":
            assert hasattr(sb3_gap, node.attr), f"{item.where}: sb3_gap has no attribute {node.attr!r}"


@pytest.mark.parametrize("item", YAML, ids=lambda it: it.where)
def test_yaml_policy_kwargs_parse(item):
    from sb3_gap.zoo_config import parse_kwargs_string

    for line in item.text.splitlines():  # line by line: docs/zoo.md shows two alternative values of one key
        m = re.match(r"\s*policy_kwargs:\s*(.+)$", line)
        if m:
            value = yaml.safe_load(m.group(1))
            if value.startswith("sb3_gap."):  # the Zoo evaluates YAML strings where `sb3_gap` is a name
                value = value[len("sb3_gap.") :]
            assert isinstance(parse_kwargs_string(value), dict), f"{item.where}: {value!r}"
    if item.text.lstrip().startswith(("MinAtar/", "atari", "Dopamine/")):
        assert isinstance(yaml.safe_load(item.text), dict)


_PATH = re.compile(r"(?<![\w/.-])((?:zoo_configs|examples|benchmarks|docs|tests|tools|sb3_gap|results)/[\w./-]*\w)(\*?)(/?)")


def test_referenced_paths_exist():
    missing = []
    for path in dc.doc_files():
        text = path.read_text(encoding="utf-8")
        for m in _PATH.finditer(text):
            rel, star, slash = m.group(1), m.group(2), m.group(3)
            if ".." in rel or not (star or slash or "." in rel.rsplit("/", 1)[-1]):
                continue  # a path is a file name (with an extension), a folder (trailing /) or a glob; not "sb3_gap/SB3 extractors"
            found = list(REPO.glob(rel + "*")) if star else [REPO / rel] if (REPO / rel).exists() else []
            if not found:
                missing.append(f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {rel}{star}")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


_ENV_ID = re.compile(r"(?<![\w/-])((?:Dopamine|Atari100k|Procgen|MinAtar|ALE)/[A-Za-z0-9]+-v\d+|[A-Z][A-Za-z0-9]*NoFrameskip-v4)(?![\w-])")


def test_env_ids_in_docs_are_registered():
    import ale_py

    import sb3_gap  # noqa: F401  registers Dopamine/, Atari100k/, Procgen/, MinAtar/

    gym.register_envs(ale_py)
    ids = {}
    for path in dc.doc_files():
        text = path.read_text(encoding="utf-8")
        for m in _ENV_ID.finditer(text):
            ids.setdefault(m.group(1), f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert len(ids) > 5
    bad = []
    for env_id, where in sorted(ids.items()):
        try:
            gym.spec(env_id)
        except gym.error.Error as e:
            bad.append(f"{where}: {env_id}: {e}")
    assert not bad, "env ids in the docs that gymnasium does not know:\n" + "\n".join(bad)


def test_zoo_md_shows_the_rl_zoo3_progress_flag():
    """rl_zoo3 shows no progress unless asked (`-P`/`--progress`): docs/zoo.md says so, and the flag is rl_zoo3's."""
    import rl_zoo3.train

    zoo_md = (Path(__file__).resolve().parents[1] / "docs" / "zoo.md").read_text(encoding="utf-8")
    assert re.search(r"python -m rl_zoo3\.train [^\n]*-P\b", zoo_md), "docs/zoo.md shows no rl_zoo3.train command with -P"
    assert '"--progress"' in Path(rl_zoo3.train.__file__).read_text() and '"-P"' in Path(rl_zoo3.train.__file__).read_text()


def _bound_rows() -> list[tuple[str, list[str]]]:
    """The rows of docs/checks.md's "Each bound lives once" table: (value cell, home modules)."""
    text = (REPO / "docs" / "checks.md").read_text(encoding="utf-8").split("## Each bound lives once")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return [(row[1], [p[:-3].replace("/", ".") for p in re.findall(r"`(sb3_gap/[\w/]+\.py)`", row[2])]) for row in rows[1:]]


def test_checks_md_bounds_name_the_constants_and_values_of_their_home():
    """Every constant the bound table names lives in the module the table gives as its home, with the value it shows
    (`NAME` = value); `MAX_*` means each home defines at least one."""
    rows = _bound_rows()
    assert rows and all(homes for _, homes in rows)
    for value, homes in rows:
        modules = [importlib.import_module(home) for home in homes]
        for name, shown in re.findall(r"`([A-Z][A-Z0-9_]+)`(?: = ([0-9]+))?", value):
            (home,) = [m for m in modules if hasattr(m, name)] or [None]
            assert home is not None, f"docs/checks.md: {name} is in none of {homes}"
            if shown:
                assert getattr(home, name) == int(shown), f"docs/checks.md: {name} = {shown}, the code has {getattr(home, name)}"
        if "`MAX_*`" in value:
            assert all(any(n.startswith("MAX_") for n in vars(m)) for m in modules), (value, homes)
