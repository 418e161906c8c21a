# The phlo-dagster runtime image every Dagster component of a PhloWorkflow runs (code server, webserver, daemon,
# dbt-compile Job, run Jobs). Build from the repository root:
#   docker build -t phlo-dagster:0.4.0 .
# Bake your own workflows, dbt project and plugin with --build-arg WORKFLOWS_DIR=... DBT_DIR=... PLUGIN_DIR=...
FROM python:3.12-slim

ARG WORKFLOWS_DIR=examples/quickstart/workflows
ARG DBT_DIR=examples/quickstart/dbt
ARG PLUGIN_DIR=examples/quickstart/plugin

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    WORKFLOWS_PATH=/app/workflows \
    PHLO_DBT_PROJECT_DIR=/app/dbt

WORKDIR /src
# Dependencies first, from the package metadata alone: phlo-dagster with the dbt and s3 extras (Dagster,
# dagster-k8s, dagster-postgres, dagster-dbt, dbt, dagster-aws) at the versions of requirements.lock, the lock
# the test venv installs from.
# This layer changes only with pyproject.toml or the lock, so a code change rebuilds only the layers below it.
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir -c requirements.lock ".[dbt,s3]"

# Then the project itself over that metadata-only install, and the plugin.
COPY README.md ./
COPY phlo_dagster/ phlo_dagster/
COPY operator/ operator/
RUN pip install --no-cache-dir --no-deps --force-reinstall .
COPY ${PLUGIN_DIR}/ plugin/
RUN pip install --no-cache-dir --no-deps ./plugin

COPY ${WORKFLOWS_DIR}/ /app/workflows/
COPY ${DBT_DIR}/ /app/dbt/

RUN useradd --uid 10001 --user-group --home-dir /opt/dagster --shell /usr/sbin/nologin phlo \
 && mkdir -p /opt/dagster/dagster_home /opt/dagster/workspace \
 && chown -R 10001:10001 /opt/dagster \
 && rm -rf /src

WORKDIR /app
USER 10001:10001
EXPOSE 3000 4000
CMD ["dagster", "api", "grpc", "-m", "phlo_dagster.definitions", "-h", "0.0.0.0", "-p", "4000"]
