# One image, three process types (see README "Operations"):
#   web:    gunicorn -c alertcenter/gunicorn.conf.py alertcenter.wsgi
#   worker: celery -A alertcenter worker -Q detect,deliver,default
#   beat:   celery -A alertcenter beat   (exactly one)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ALERTCENTER_VAR_DIR=/app/var STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to load; the key is a build-time placeholder, never used at run time.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home /app alertcenter \
    && mkdir -p /app/var && chown -R alertcenter /app/var

USER alertcenter
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "-c", "alertcenter/gunicorn.conf.py", "alertcenter.wsgi"]
