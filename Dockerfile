# One image for every jobplane process; compose.yaml picks the process with `command:`.
#   docker build -t jobplane .
#   docker run --rm jobplane --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same pinned versions as `make dev` / `make test` (constraints.txt is the lock).
COPY . /tmp/jobplane-src
RUN cd /tmp/jobplane-src \
    && pip install --constraint constraints.txt . \
    && cd / && rm -rf /tmp/jobplane-src

# Run as an unprivileged user; its home is the working directory (and where the
# SQLite default, ./jobplane.db, would go if no JOBPLANE_DATABASE_URL is given).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin jobplane
USER jobplane
WORKDIR /home/jobplane

EXPOSE 8000
ENTRYPOINT ["jobplane"]
CMD ["--help"]
