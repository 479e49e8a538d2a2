# The servicelink operator: `docker build -t ghcr.io/servicelink/servicelink:0.2.0 .`
# Runs as `servicelink run`; every flag also reads SERVICELINK_<FLAG> from the environment.

FROM python:3.11.10-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject.toml names README.md as the readme; the build needs both. The package's
# resources/ links to the CRD and the gallery, which `servicelink demo` applies.
COPY pyproject.toml README.md ./
COPY crds/ crds/
COPY examples/gallery/ examples/gallery/
COPY operator/ operator/
# The final stage needs neither pip nor setuptools, nor the kubernetes client's asyncio
# twin (kubernetes.aio, 68 MB), which servicelink never imports.
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
    && rm -rf /opt/venv/lib/python3.11/site-packages/kubernetes/aio

# Same base as the builder: the venv's python symlinks to its interpreter.
FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /opt/venv /opt/venv
# Numeric, so runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001
# 8080: /healthz (--health-port); 9090: Prometheus /metrics (--metrics-port).
EXPOSE 8080 9090
ENTRYPOINT ["/opt/venv/bin/servicelink"]
CMD ["run"]
