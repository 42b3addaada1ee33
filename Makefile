# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test clean

demo: $(VENV)/.installed
	$(VENV)/bin/cnnzoo tour

test: $(VENV)/.installed-test
	sh scripts/ensure-chromium.sh
	$(PY) -m pytest -n 2 --dist loadgroup -q

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) runs
