"""Server-side request forgery: notifications go only to public addresses.

A webhook URL is chosen by a user, and the worker POSTs to it from inside the network: to
the cloud's metadata service, a database's admin port, anything on localhost. So every
connection is checked on the address it actually goes to, after the name is resolved: the
HTTP client's connection (urllib3's, with its socket opened here) resolves the name itself,
refuses if any address is not public, and connects to the address it checked (never
resolving twice, so a DNS answer that changes in between cannot slip through). URLs are
checked when an endpoint is made too, for an early clear error, but that check cannot be the
guard: DNS can change later.

NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true turns the guard off (a receiver on the same
machine or network; the tests' receivers on 127.0.0.1)."""

import ipaddress
import socket
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

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
    TargetRefused when any of them is not public (unless private targets are allowed), and
    socket.gaierror when the name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not private_targets_allowed():
        refused = sorted({info[4][0] for info in infos if not address_is_public(info[4][0])})
        if refused:
            raise TargetRefused(f"{host} resolves to a non-public address ({', '.join(refused)})")
    return infos


class _PublicOnlyConnection:
    """urllib3's connection, connecting only to checked public addresses: `_new_conn` is
    where urllib3 opens the socket (its own does the same with socket.create_connection);
    TLS then runs over this socket with the URL's host name, as before."""

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
        try:
            addresses = resolve_public(self._dns_host, self.port)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        failure = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.connect(address)
            except TimeoutError:
                sock.close()
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from None
            except OSError as error:
                sock.close()
                failure = error
                continue
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {failure}")


class PublicOnlyHTTPConnection(_PublicOnlyConnection, urllib3.connection.HTTPConnection):
    pass


class PublicOnlyHTTPSConnection(_PublicOnlyConnection, urllib3.connection.HTTPSConnection):
    pass


class PublicOnlyHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = PublicOnlyHTTPConnection


class PublicOnlyHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = PublicOnlyHTTPSConnection


def public_only_pool_manager(**options) -> urllib3.PoolManager:
    """urllib3's PoolManager whose connections go only to public addresses (urllib3 reads
    no proxy from the environment). The pool classes by scheme are urllib3's documented way
    to change them; tests/test_notification_ssrf.py checks they are the ones used."""
    manager = urllib3.PoolManager(**options)
    manager.pool_classes_by_scheme = {
        "http": PublicOnlyHTTPConnectionPool,
        "https": PublicOnlyHTTPSConnectionPool,
    }
    return manager


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
