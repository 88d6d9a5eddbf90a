"""DRF's user and anonymous throttles, with their rates read from the settings on every
request rather than once at import (DRF's `THROTTLE_RATES` is a class attribute frozen when
the module loads), so that a changed REST_FRAMEWORK setting takes effect."""

import ipaddress

from rest_framework import exceptions, throttling
from rest_framework.settings import api_settings


class _RateFromSettings:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserRateThrottle(_RateFromSettings, throttling.UserRateThrottle):
    """Per authenticated user (anonymous requests fall back to the client address)."""


class AnonRateThrottle(_RateFromSettings, throttling.AnonRateThrottle):
    """Per client address, for requests without a user."""


def throttle_refused_authentication(request, view) -> exceptions.Throttled | None:
    """A request refused with 401 counts against the anonymous rate of its client address.

    DRF checks throttles only after authentication and permissions pass, so on its own it
    never counts a request without (or with a wrong) token: guessing tokens, or flooding the
    token lookup, would be unlimited. Returns the Throttled error to answer instead, once
    the client is over the rate."""
    throttle = AnonRateThrottle()
    if throttle.allow_request(request, view):
        return None
    return exceptions.Throttled(wait=throttle.wait())


def client_address(request) -> str | None:
    """The client's address as the rate limits find it (API_NUM_PROXIES), for the admin's
    login lockout too (django-axes' AXES_CLIENT_IP_CALLABLE): behind a proxy, such as the
    production setup's nginx, every request comes from the proxy's address, and a lockout
    by that address would lock a username for every client at once. The socket's address
    where the forwarded one is not an IP address (the database column holds only those)."""
    address = throttling.BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return request.META.get("REMOTE_ADDR")
