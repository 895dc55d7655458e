# One image for the three services (and the migration and topic jobs); the command picks one:
#   python -m services.ingest | services.router | services.metrics
#   alembic upgrade head       (migrations, a one-shot job)
#   switchboard topics apply deploy/topics.yaml   (topics, a one-shot job)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SWITCHBOARD_HOST=0.0.0.0
WORKDIR /app

# Dependencies first (from the lock: constraints.txt), so code changes reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p shared services devtools cli \
 && touch shared/__init__.py services/__init__.py devtools/__init__.py cli/__init__.py \
 && pip install -c constraints.txt . \
 && pip uninstall -y switchboard

COPY shared shared
COPY services services
COPY devtools devtools
COPY cli cli
COPY migrations migrations
COPY alembic.ini ./
COPY deploy/topics.yaml deploy/topics.yaml
RUN pip install --no-deps -c constraints.txt . \
 && useradd --system --uid 10001 switchboard
USER 10001

EXPOSE 8001 8002 8003
CMD ["python", "-m", "services.router"]
