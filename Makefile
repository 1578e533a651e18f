# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so that no requirement pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sb3_gap-installed

.PHONY: demo test test-fast check docs install clean

# envpool's Procgen needs the system Qt5 runtime (docs/environments.md); CI runs as root on Debian.
# tests/test_postgres.py starts its own PostgreSQL server from Debian's package (docs/sweeps.md, "Tested in the suite").
# A createcluster.d file stops the package from creating and starting a default cluster on port 5432 while it installs;
# it is removed again afterwards (also when the install fails), so no setting of ours stays in /etc.
CREATECLUSTER := /etc/postgresql-common/createcluster.d/sb3-gap-install.conf
$(STAMP): setup.py
	@missing="$$(for p in libqt5gui5 postgresql; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		made_dir=0; [ -d $(dir $(CREATECLUSTER)) ] || made_dir=1; \
		mkdir -p $(dir $(CREATECLUSTER)) && echo "create_main_cluster = false" > $(CREATECLUSTER); \
		apt-get update && apt-get install -y $$missing; status=$$?; \
		rm -f $(CREATECLUSTER); [ $$made_dir = 0 ] || rmdir $(dir $(CREATECLUSTER)) 2>/dev/null || true; \
		[ $$status = 0 ] || exit $$status; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m sb3_gap.sweep.demo

# Lint, format check, type check and the import layers (pyproject.toml: no circle) first (seconds), then the suite on
# every core (pytest-xdist; CONTRIBUTING.md).
check: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: check
	$(PY) -m pytest -q -n auto tests

# The inner loop while developing: the same checks and every test not marked slow or postgres. CI runs `make test`.
test-fast: check
	$(PY) -m pytest -q -n auto -m "not slow and not postgres" tests

# The documentation site (docs/conf.py): the Markdown of docs/ and results/ and the API reference from the docstrings,
# warnings as errors (broken references included, -n), nothing fetched. tests/test_docs_site.py builds the same in `make test`.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -n -b html -c docs -d docs/_build/doctrees . docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
