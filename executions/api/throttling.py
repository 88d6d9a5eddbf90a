"""DRF's user and anonymous throttles, with their rates read from the settings on every
request rather than once at import (DRF's `THROTTLE_RATES` is a class attribute frozen when
the module loads), so that a changed REST_FRAMEWORK setting takes effect."""

import ipaddress
import logging
import time

from redis.exceptions import RedisError
from rest_framework import exceptions, throttling
from rest_framework.settings import api_settings

from .. import metrics

logger = logging.getLogger("executions.api.throttling")

# While the cache does not answer, a warning at most this often per process (seconds).
CACHE_DOWN_WARNING_INTERVAL = 60
_last_cache_down_warning = 0.0


class _RateFromSettings:
    """A fixed window per client, counted with the cache's atomic add and incr.

    DRF's own throttle reads the client's list of request times, appends and writes it back:
    two processes (or hosts) sharing the counter through Redis then overwrite each other's
    request, and a client sending in parallel gets more than its rate. Here each request is
    one atomic INCR of a counter that lives `duration` seconds from the client's first
    request, so N per minute is N, whatever the number of processes. (Unlike DRF's sliding
    log, a client may send N at the end of one window and N at the start of the next.)

    When the cache does not answer (Redis down), requests are let through rather than refused
    (fail open): the rate limits are a guard against floods, and a Redis outage should not
    take the API down with it. It is logged, and counted in
    executions_throttle_cache_errors_total for an alert.
    """

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            count = self._count_request()
        except RedisError as error:
            _warn_cache_down(error)
            return True
        return count <= self.num_requests

    def _count_request(self) -> int:
        now = self.timer()
        if self.cache.add(self.key, 0, self.duration):
            self.cache.set(f"{self.key}:start", now, self.duration)
        try:
            return self.cache.incr(self.key)
        except ValueError:
            # The window ended between add and incr: this request opens the next one.
            self.cache.add(self.key, 0, self.duration)
            self.cache.set(f"{self.key}:start", now, self.duration)
            return self.cache.incr(self.key)

    def wait(self):
        """Seconds until the client's window ends (at least 1)."""
        try:
            started = self.cache.get(f"{self.key}:start")
        except RedisError:
            started = None
        if started is None:
            return 1
        return max(1, started + self.duration - self.timer())


def _warn_cache_down(error) -> None:
    global _last_cache_down_warning
    metrics.THROTTLE_CACHE_ERRORS.inc()
    if time.monotonic() - _last_cache_down_warning >= CACHE_DOWN_WARNING_INTERVAL:
        _last_cache_down_warning = time.monotonic()
        logger.warning("Rate limits not applied: the cache (CACHE_URL) does not answer: %s", error)


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
