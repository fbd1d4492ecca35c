# The two commands: `make run` (the demo on the embedded default) and `make test` (the suite
# against real PostgreSQL and Redis). Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Embedded demo defaults; override on the command line or in the environment.
export DEBUG ?= 1
export WEBHOOK_ALLOWED_NETWORKS ?= 127.0.0.0/8,::1/128
export LOG_FORMAT ?= text

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/alertcenter
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: run test test-repeat venv install install-dev bench clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(PY) manage.py runstack $(RUN_ARGS)

test: $(VENV)/.installed-dev
	DEBUG=0 SECRET_KEY=test-only-secret-key LOG_FORMAT=text AUTH_FAILURES_PER_MINUTE=1000000 \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	CELERY_BROKER_URL= CACHE_URL= \
	$(PY) -m pytest $(PYTEST_ARGS)

# Flakiness hunt: SUITE run N times in a row, each run exactly as `make test` (same env, so pass
# DATABASE_URL/REDIS_URL the same way), stopping at the first failing run; a one-line tally at the end.
N ?= 10
SUITE ?= tests/reliability tests/delivery/test_worker_*.py tests/delivery/test_state_race.py \
	tests/delivery/test_claim_lease.py tests/delivery/test_stragglers.py tests/alerts/test_concurrency.py \
	tests/core/test_worker.py tests/alerts/test_fire_bulk.py::test_concurrent_batches_creating_the_same_fingerprints_end_with_one_alert_each \
	tests/rules/test_engine.py::test_concurrent_batches_on_one_group_count_exactly_once \
	tests/rules/test_engine.py::test_alert_resolved_during_the_batch_is_not_fed_and_the_group_is_judged_afresh \
	tests/ingest/test_plugin_limit.py::test_concurrent_requests_never_register_more_than_the_limit

test-repeat: $(VENV)/.installed-dev
	@passed=0; failed=0; \
	for i in $$(seq 1 $(N)); do \
		echo "== test-repeat: run $$i of $(N)"; \
		if $(MAKE) --no-print-directory test PYTEST_ARGS="$(SUITE) -x $(PYTEST_ARGS)"; then \
			passed=$$((passed + 1)); else failed=$$((failed + 1)); break; fi; \
	done; \
	echo "test-repeat: $$passed passed, $$failed failed, $$(($(N) - passed - failed)) not run (of $(N) runs)"; \
	test $$failed -eq 0

clean:
	rm -rf var .pytest_cache
