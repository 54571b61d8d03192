# The Locust image of the `loadtest` Compose profile and the k8s locust component: the package
# with its `loadtest` extra (so the scenarios may import taskflow) and the loadtest/ folder.
# Same build arguments as deploy/Dockerfile; build from the repository root:
#
#   docker build -f deploy/loadtest.Dockerfile -t taskflow-kit-locust .

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG WHEELHOUSE=deploy/wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/taskflow
COPY ${WHEELHOUSE}/ /wheelhouse/
COPY pyproject.toml README.md /src/
COPY taskflow/ /src/taskflow/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
        set -- --no-index --find-links /wheelhouse; \
    fi; \
    /opt/taskflow/bin/pip install "$@" '/src[loadtest]'

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 taskflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin taskflow
COPY --from=build /opt/taskflow /opt/taskflow
WORKDIR /app
COPY loadtest/ /app/loadtest/
ENV PATH=/opt/taskflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
# The master's web UI and worker port (5557); the scenario and the rest come from the command
# line (k8s/components/locust/) or LOCUST_* variables (deploy/compose.yml).
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
