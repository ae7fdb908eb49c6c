# Single entry point. `make demo` runs the main job on embedded defaults; `make test` runs
# the test suite. Both create .venv on a fresh clone (scripts/setup_env.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo bench lock clean

setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/llm4msr demo --out $(DEMO_OUT)

bench: setup
	$(VENV)/bin/llm4msr bench

# Regenerate the lock file from the current venv (after changing setup.py on purpose).
lock:
	$(VENV)/bin/pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
