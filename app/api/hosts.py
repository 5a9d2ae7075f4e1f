"""Whether a request comes through the API's own name, and a write from its own origin.

Two browser attacks on an API that a person's browser can reach:

- **DNS rebinding**: a page on ``evil.example`` makes its name resolve to 127.0.0.1,
  and its scripts then talk to a local API as if it were their own site, reading the
  answers. Their requests carry ``Host: evil.example``; an allow-list of names
  (``JOBPLANE_ALLOWED_HOSTS``) refuses them.
- **Cross-site request forgery**: any page may make a browser POST to any address. A
  body-less POST (cancel, retry, run a schedule) needs no preflight, so without a token
  it would go through. Browsers say where such a request comes from (``Origin``,
  ``Sec-Fetch-Site``); writes from anywhere but the API's own origin are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers

#: The names of this machine's loopback interface, as a browser sends them in ``Host``.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: Ports a ``Host`` header or an origin may leave out.
DEFAULT_PORTS = (":80", ":443")
#: ``Sec-Fetch-Site`` values of requests made by the API's own pages, or by a person
#: (typed address, bookmark).
OWN_SITE = frozenset({"same-origin", "none"})


class AllowedHosts:
    """The ``Host`` headers the API answers: any (no names, or ``*``), or these names,
    each with any port (``example.com``) or with one (``example.com:8443``)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = {name.lower() for name in names}
        self.any = not self.names or "*" in self.names

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        host = host.lower()
        return host in self.names or _name_of(host) in self.names


def cross_site(headers: Headers) -> bool:
    """Whether the browser says this request comes from another origin than the API's."""
    if headers.get("sec-fetch-site", "none") not in OWN_SITE:
        return True
    origin = headers.get("origin")
    if origin is None:  # not sent by a browser, or a same-origin GET
        return False
    # "null" (a sandboxed frame, a file) has no host, so it is never the API's own.
    return _without_default_port(urlsplit(origin).netloc.lower()) != _without_default_port(
        headers.get("host", "").lower()
    )


def _name_of(host: str) -> str:
    """``host`` without its port: ``example.com:8000`` → ``example.com``, ``[::1]:80`` →
    ``[::1]``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


def _without_default_port(host: str) -> str:
    for port in DEFAULT_PORTS:
        host = host.removesuffix(port)
    return host
