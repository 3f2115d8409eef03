# The two commands: `make run` (the app on the embedded default) and `make test`.
# Both create .venv and install everything from pyproject.toml on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install-stamp

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml tests/e2e/setup_browser.sh scripts/setup_ocr.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# the CPU wheel of torch first, or sentence-transformers pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	bash tests/e2e/setup_browser.sh
	bash scripts/setup_ocr.sh
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/pharmgpt run

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/gateway.py
	$(PY) bench/services.py
	$(PY) bench/retrieval.py
	$(PY) bench/ingest.py
	$(PY) bench/app.py
	$(PY) bench/migration.py --scale 0.1

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
