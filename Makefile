# The two commands: `make run` (the app on the embedded default) and `make test`.
# Both create .venv and install everything from pyproject.toml on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install-stamp

.PHONY: install run test test-legacy-keys lint lint-imports bench clean

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

# the legacy-keys job: a legacy project (HS256 JWT secret, JWT anon/service keys) on a
# representative subset (RLS matrix, accounts, key handling); the main run uses the new keys
ACCOUNTS := tests/integration/test_services_accounts.py
LEGACY_TESTS := tests/integration/test_rls_matrix.py tests/integration/test_gateway_keys.py \
	$(ACCOUNTS)::test_signup_rules $(ACCOUNTS)::test_expired_and_revoked_sessions_are_refused \
	$(ACCOUNTS)::test_profile_password_change_and_deletion

# the lint first: a broken layer contract or an unformatted file fails CI before the suite runs
test: install lint
	$(PY) -m pytest
	PHARMGPT_TEST_KEYS=legacy $(PY) -m pytest -q $(LEGACY_TESTS)

test-legacy-keys: install
	PHARMGPT_TEST_KEYS=legacy $(PY) -m pytest -q $(LEGACY_TESTS)

# style (ruff) and the layers' import contracts (pyproject [tool.importlinter]); part of `make test`
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/lint_imports.py

lint-imports: install
	$(PY) scripts/lint_imports.py

bench: install
	$(PY) bench/gateway.py
	$(PY) bench/services.py
	$(PY) bench/retrieval.py
	$(PY) bench/ingest.py
	$(PY) bench/app.py
	$(PY) bench/migration.py --scale 0.1

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
