# One image, three process types (README "Operations"):
#   web:    gunicorn -c alertcenter/gunicorn.conf.py alertcenter.wsgi      (the default CMD)
#   worker: celery -A alertcenter worker -Q detect    (one deployment per queue: detect, deliver, default)
#   beat:   celery -A alertcenter beat --schedule /app/var/celerybeat-schedule   (exactly one)
# The HEALTHCHECK below is for web; worker and beat deployments override it (README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ALERTCENTER_VAR_DIR=/app/var STATIC_ROOT=/app/staticfiles
# No PROMETHEUS_MULTIPROC_DIR here: the worker and beat containers share this image and must not
# use multiprocess mode; alertcenter/gunicorn.conf.py sets it for web (/app/var/prometheus-web).

WORKDIR /app
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

# .dockerignore keeps .git, .venv, var/ (local databases, broker files) and tests out of the image.
COPY . .
# collectstatic needs settings to load; the key is a build-time placeholder, never used at run time.
# The code stays root-owned (read-only to the service user); only var/ is writable.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin alertcenter \
    && mkdir -p /app/var && chown -R alertcenter:alertcenter /app/var

USER 10001
EXPOSE 8000
# Liveness only (/-/live answers before host checks and the HTTPS redirect, and does not depend on
# the database or the workers, so an outage elsewhere never restarts healthy web containers).
# Readiness with dependencies is /api/v1/health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/-/live', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "-c", "alertcenter/gunicorn.conf.py", "alertcenter.wsgi"]
