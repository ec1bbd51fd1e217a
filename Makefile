# Two commands do everything: `make sandbox` and `make test`. Both set up .venv first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: sandbox test lint bench chromium

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,redis]"
	touch $@

sandbox: $(VENV)/.installed
	$(VENV)/bin/memberbot sandbox

# The whole suite twice: on SQLite, then on PostgreSQL (127.0.0.1:5432/test; without it, that
# pass skips with the reason). pytest exits 5 when it collected no tests: not a failure.
PYTEST = $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
test: $(VENV)/.installed chromium
	@$(PYTEST); rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; \
	echo "--- the same suite on PostgreSQL ---"; \
	MEMBERBOT_TEST_DB=postgres $(PYTEST); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# The browser tests (tests/browser) drive Debian's Chromium headless. As root with apt-get, install
# it when it is missing; when it cannot be had they skip with the reason, which fails nothing.
chromium:
	@if [ -z "$$MEMBERBOT_CHROMIUM" ] \
	    && ! { command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "--- installing Chromium for the browser tests ---"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium fonts-noto-cjk; } >/dev/null 2>&1 \
	    || echo "Chromium could not be installed: the browser tests will skip"; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
