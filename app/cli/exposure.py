"""Who can reach the API a command serves: the rules ``jobplane api`` and ``dev`` start by.

- Bound beyond loopback (anything but 127.0.0.0/8, ::1, localhost), the API needs a
  token: without one the command refuses to start, unless ``--insecure-no-auth`` says
  that an open API is what is wanted, and then it says so loudly at every start.
- Bound to loopback without a token, and with no ``JOBPLANE_ALLOWED_HOSTS``, the API
  answers only the loopback names, so that a page whose name was rebound to 127.0.0.1
  cannot use it either.
"""

from __future__ import annotations

import ipaddress
import logging

from jobplane.api.hosts import LOOPBACK_NAMES
from jobplane.domain import JobplaneError
from jobplane.settings import Settings

logger = logging.getLogger("jobplane")


class OpenToTheNetwork(JobplaneError):
    """The API would serve the network without a token."""


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a name: it may resolve to any address
        return False


def serving_settings(settings: Settings, host: str, port: int, *, insecure: bool) -> Settings:
    """The settings to serve the API with on ``host``; ``OpenToTheNetwork`` when that
    would be an open API on the network and ``insecure`` (``--insecure-no-auth``) is not
    given."""
    if settings.api_token:
        return settings
    if not is_loopback(host):
        if not insecure:
            raise OpenToTheNetwork(
                f"refusing to serve the API on {host}:{port} without a token: anyone who"
                " can reach it could run, cancel and retry jobs. Set JOBPLANE_API_TOKEN"
                " (e.g. `export JOBPLANE_API_TOKEN=$(openssl rand -hex 32)`), bind to"
                " 127.0.0.1, or pass --insecure-no-auth if an open API is what you want"
            )
        logger.warning(
            "INSECURE: the API on %s:%d has NO TOKEN (--insecure-no-auth): anyone who can"
            " reach it can run, cancel and retry jobs. Set JOBPLANE_API_TOKEN.",
            host,
            port,
        )
    elif insecure:
        logger.warning("the API on %s:%d has no token (--insecure-no-auth)", host, port)
    if is_loopback(host) and not settings.allowed_hosts:
        return settings.model_copy(update={"allowed_hosts": ",".join(LOOPBACK_NAMES)})
    return settings
