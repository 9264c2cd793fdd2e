# make test: set up .venv and run ruff, mypy (strict) and pytest.
# make demo: set up .venv and run a local network (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test lint typecheck pytest demo bench fuzz clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check p2pakash tests bench

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: lint typecheck pytest

demo: setup
	$(PY) -m p2pakash.demo

bench: setup
	$(PY) bench/gossip_bench.py --nodes 10
	$(PY) bench/gossip_bench.py --nodes 50

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
