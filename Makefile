# Two commands do everything on a fresh machine with only Python:
#   make demo   installs into .venv, then runs the main job on an embedded tiny model
#   make test   installs into .venv, then runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench-tiny clean

install: $(VENV)/.installed

# torch==2.13.0 first: it resolves to the local CPU build, and the project's own
# torch range (which 2.13.0 satisfies) then installs nothing more, so no CUDA build is pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $@

demo: install
	$(PY) -m fbc_compile demo

test: install
	$(PY) -m pytest -q -ra

bench-tiny: install
	$(PY) bench/run.py steps --preset tiny

clean:
	rm -rf $(VENV) .pytest_cache
