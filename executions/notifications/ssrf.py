"""Server-side request forgery: notifications go only to public addresses.

A webhook URL is chosen by a user, and the worker POSTs to it from inside the network: to
the cloud's metadata service, a database's admin port, anything on localhost. So every
connection is checked on the address it actually goes to, after the name is resolved: the
HTTP client's network backend resolves the name itself, refuses if any address is not
public, and connects to the address it checked (never resolving twice, so a DNS answer that
changes in between cannot slip through). URLs are checked when an endpoint is made too, for
an early clear error, but that check cannot be the guard: DNS can change later.

NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true turns the guard off (a receiver on the same
machine or network; the tests' receivers on 127.0.0.1)."""

import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

# Ports a webhook may use: any, but never 0.
_ALLOWED_SCHEMES = ("http", "https")


class TargetRefused(ValueError):
    """A notification target that is not allowed; the message says why, for a person."""


def address_is_public(address: str) -> bool:
    """Whether `address` is a public unicast address: not loopback, private (RFC 1918,
    unique-local fc00::/7), link-local (and the metadata address 169.254.169.254), shared
    (100.64.0.0/10, where some clouds put metadata too), multicast, reserved, unspecified;
    IPv4 addresses inside IPv6 (::ffff:127.0.0.1, 6to4, NAT64) are judged as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(ip.packed[-4:])
        if embedded is not None:
            return address_is_public(str(embedded))
    return ip.is_global and not ip.is_multicast


def private_targets_allowed() -> bool:
    return settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS


def resolve_public(host: str, port: int) -> list[tuple]:
    """The addresses of `host` to connect to (getaddrinfo's tuples), all checked; raises
    TargetRefused when any of them is not public (unless private targets are allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
    if not private_targets_allowed():
        refused = sorted({info[4][0] for info in infos if not address_is_public(info[4][0])})
        if refused:
            raise TargetRefused(f"{host} resolves to a non-public address ({', '.join(refused)})")
    return infos


class PublicOnlyBackend(httpcore.SyncBackend):
    """httpcore's network backend that connects only to checked public addresses."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        error = None
        for family, kind, proto, _, address in resolve_public(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in socket_options or ():
                    sock.setsockopt(*option)
                sock.connect(address)
            except TimeoutError:
                sock.close()
                raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
            except OSError as failure:
                sock.close()
                error = failure
                continue
            return httpcore._backends.sync.SyncStream(sock)
        raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {error}")


class PublicOnlyTransport(httpx.HTTPTransport):
    """httpx's transport, with its connection pool on PublicOnlyBackend. httpx takes no
    network backend, so the pool it builds is replaced by one with the same settings
    (tests/test_notification_ssrf.py names the private attribute this relies on)."""

    def __init__(self, *, limits: httpx.Limits, verify=True):
        super().__init__(limits=limits, verify=verify, trust_env=False)
        pool = self._pool
        self._pool = httpcore.ConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=pool._max_connections,
            max_keepalive_connections=pool._max_keepalive_connections,
            keepalive_expiry=pool._keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            network_backend=PublicOnlyBackend(),
        )


def check_target_url(url: str) -> str:
    """`url` if it may be an endpoint's target, else TargetRefused with a reason: http or
    https, a host, no credentials in it, and, when the host is an IP address or localhost,
    a public one. Names are resolved only when connecting (PublicOnlyBackend)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in _ALLOWED_SCHEMES:
        raise TargetRefused("the URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry a user name or password")
    if port == 0:
        raise TargetRefused("the URL's port must not be 0")
    if private_targets_allowed():
        return url
    if host == "localhost" or host.endswith(".localhost"):
        raise TargetRefused(f"{host} is not a public address")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return url  # a name: checked when connecting
    if not address_is_public(host):
        raise TargetRefused(f"{host} is not a public address")
    return url
