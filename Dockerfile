# facegen web service: gunicorn (gunicorn.conf.py) serving app:create_app() over HTTPS on 8443.
# Build: docker build -t facegen:latest .      Run: see docker-compose.yml and docs/DEPLOY.md
# Python 3.10, as the seeds ran it: requirements.txt pins versions that install on 3.10 (and newer).
# Pin the digest too for reproducible builds (docker buildx imagetools inspect python:3.10-slim-bookworm).
FROM python:3.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/tmp \
    PORT=8443 \
    FACEGEN_MODELS_DIR=/app/models

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt

# An unprivileged user with a fixed uid (k8s/deployment.yaml runs as 10001); the code stays root-owned, read-only.
RUN groupadd --system --gid 10001 facegen \
    && useradd --system --uid 10001 --gid facegen --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin facegen

# Code: the service and the core it shares with training (serving never imports the training package).
COPY gunicorn.conf.py gunicorn_worker.py /app/
COPY facegen/ /app/facegen/
COPY app/ /app/app/
# The bundled model(s) last, so swapping a model rebuilds one small layer (or mount another models folder instead).
COPY models/ /app/models/

USER 10001:10001
EXPOSE 8443

# No curl in the slim image: Python fetches /healthz (the certificate may be self-signed, so it is not verified here).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:' + os.environ.get('PORT', '8443') + '/healthz', timeout=4, context=ssl._create_unverified_context())"]

CMD ["gunicorn", "-c", "gunicorn.conf.py"]
