# The forwarder as a container: `docker build -t redis-forwarder:local .`
# (compose/ builds it for the forwarder nodes and the cluster's cluster-init).
FROM python:3.11-slim

# hiredis and kazoo ship wheels: no compiler needed. No extras: a node needs none, and
# the `lab` extra (matplotlib, for drill timelines) would add ~120 MB with numpy,
# fontTools and Pillow to every node.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /src

RUN useradd --system --create-home --home-dir /home/forwarder forwarder
USER forwarder
WORKDIR /home/forwarder

# /healthz answers while the node's event loop turns (configure [node] metrics; the
# compose files give each node its address). Exits 0 when there is no endpoint to ask.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,sys,urllib.request as u; a=os.environ.get('FORWARDER_HEALTH'); sys.exit(0 if not a else (0 if u.urlopen(f'http://{a}/healthz', timeout=2).status == 200 else 1))"

ENTRYPOINT ["redis-forwarder"]
CMD ["--help"]
