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

.PHONY: run test venv install install-dev bench clean

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

clean:
	rm -rf var .pytest_cache
