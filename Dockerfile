# The one image of every process: web (gunicorn, the default command), workers (manage.py rundramatiq)
# and the scheduler (manage.py runperiodiq). compose.yaml runs them; see "Deployment" in README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The runtime part of requirements.txt: the test and tooling pins after it stay out of the image.
COPY requirements.txt .
RUN sed '/^# Tests and tooling/,$d' requirements.txt > /tmp/runtime.txt \
    && pip install -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt

COPY . .

# Static files at build time, served by WhiteNoise from the web process. The settings need a key to
# load: this one exists for this command only; every container gets its own SECRET_KEY.
RUN SECRET_KEY=collectstatic-only DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 --no-create-home app
USER app

EXPOSE 8000
# Liveness only: /healthz touches neither the database nor Redis (compose checks /readyz for the web
# service and runs manage.py notifications_health for workers and the scheduler).
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=4)"]
CMD ["gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "30", "--access-logfile", "-"]
