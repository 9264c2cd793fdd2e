# make test: set up .venv and run ruff, mypy (strict) and pytest.
# make demo: set up .venv and run a local network (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test lint typecheck pytest demo bench fuzz clean podman

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check p2pakash tests bench fuzz

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider

# podman: as root, install podman, runc and busybox-static when podman is missing (the
# podman tests then run; they skip with a reason otherwise). See scripts/setup-podman.sh.
podman:
	sh scripts/setup-podman.sh

test: podman lint typecheck pytest

demo: setup podman
	$(PY) -m p2pakash.demo

bench: setup
	$(PY) bench/gossip_bench.py --nodes 10
	$(PY) bench/gossip_bench.py --nodes 50

# fuzz: long fuzz runs, FUZZ_SECONDS (default 300) per group; atheris when it installs.
fuzz: setup
	$(VENV)/bin/python -c "import atheris" 2>/dev/null || $(VENV)/bin/pip install -q atheris || true
	PYTHONPATH=. $(PY) fuzz/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
