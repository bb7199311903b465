# Two commands do everything on a fresh machine with only Python:
#   make demo   installs into .venv, then runs the main job on an embedded tiny model
#   make test   installs into .venv, then runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-floor bench-tiny clean

install: $(VENV)/.installed

# torch==2.13.0 first: it resolves to the local CPU build, and the project's own
# torch range (which 2.13.0 satisfies) then installs nothing more, so no CUDA build is pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[diffusers,demo,test,bench]"
	touch $@

demo: install
	$(PY) -m fbc_compile demo

# Two workers, each taking whole test modules (their fixtures share compiled models).
test: install
	$(PY) -m pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder

# The oldest diffusers pyproject.toml admits, with the transformers of its day: the backend's tests that
# need no inductor (CI runs this after `make test`).
DIFFUSERS_FLOOR := 0.35.0
test-floor:
	$(PYTHON) -m venv $(VENV)-floor
	$(VENV)-floor/bin/python -m pip install -q torch==2.13.0
	$(VENV)-floor/bin/python -m pip install -q -e . "diffusers==$(DIFFUSERS_FLOOR)" "transformers<5" triton==3.7.1 pytest numpy
	$(VENV)-floor/bin/python -m pytest -q -ra -m "not slow" tests/test_backend.py tests/test_threads.py

bench-tiny: install
	$(PY) bench/run.py steps --preset tiny

clean:
	rm -rf $(VENV) $(VENV)-floor .pytest_cache
