# Two commands for a newcomer on a fresh Debian machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test lint typecheck clean

$(VENV)/.installed: pyproject.toml
	./scripts/system-deps.sh run
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.'
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml
	./scripts/system-deps.sh test
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$(CURDIR)/var $(VENV)/bin/fastreg serve deploy/config-dev.yml

test: $(VENV)/.test-installed
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check fastreg tests
	$(VENV)/bin/mypy fastreg

clean:
	rm -rf $(VENV) var build *.egg-info
