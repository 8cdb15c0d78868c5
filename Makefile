# sipline: two commands. `make dev` runs the whole system locally; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-tools/checkov

.PHONY: dev test lint typecheck bench bench-load clean

$(STAMP): requirements.txt requirements-relay.txt requirements-dev.txt
	scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# checkov in a venv of its own (requirements-tools.txt says why); the infra tests run it.
$(CHECKOV_VENV)/.installed: requirements-tools.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

dev: $(STAMP)
	$(PY) -m scripts.dev

test: $(STAMP) $(CHECKOV_VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The in-process benchmarks (a few minutes); bench-load runs the relay under SIPp (about 25 min).
bench: $(STAMP)
	$(PY) -m bench.routing
	$(PY) -m bench.context
	$(PY) -m bench.cold_start
	$(PY) -m bench.sip_parser
	$(PY) -m bench.rtp
	$(PY) -m bench.codecs
	$(PY) -m bench.media
	$(PY) -m bench.rtp_pacing
	$(PY) -m bench.bridge_path

bench-load: $(STAMP)
	scripts/system-deps.sh bench
	$(PY) -m bench.sip_load
	$(PY) -m bench.relay_calls
	$(PY) -m bench.outgoing
	$(PY) -m bench.transfer

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache .dev
