"""DRF's user and anonymous throttles, with their rates read from the settings on every
request rather than once at import (DRF's `THROTTLE_RATES` is a class attribute frozen when
the module loads), so that a changed REST_FRAMEWORK setting takes effect."""

from rest_framework import throttling
from rest_framework.settings import api_settings


class _RateFromSettings:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserRateThrottle(_RateFromSettings, throttling.UserRateThrottle):
    """Per authenticated user (anonymous requests fall back to the client address)."""


class AnonRateThrottle(_RateFromSettings, throttling.AnonRateThrottle):
    """Per client address, for requests without a user."""
