"""Time-ordered ids: UUID version 7 (RFC 9562, section 5.7).

A random UUID (v4) lands anywhere in a B-tree index, so every insert and every batch that
walks the newest or the oldest rows touches pages all over the index of the primary key, and
of every index that holds the id (the audit records', the Idempotency-Keys'). A v7 id starts
with its creation time in milliseconds, so new ids land on the right-hand pages and ids made
close in time sit close together.

Layout (RFC 9562, 5.7): 48 bits of Unix time in milliseconds, the version (7), 12 bits of
sub-millisecond time (section 6.2, method 3: increased clock precision, so ids of one process
stay in creation order within a millisecond too), the variant (0b10), 62 random bits. The 62
random bits are what makes an id unguessable; docs/security.md says what the rest reveals.

Python 3.14's `uuid.uuid7()` does the same; this module goes when the service requires 3.14.
"""

import os
import threading
import time
import uuid

_SUB_MS_STEPS = 4096  # 12 bits
_lock = threading.Lock()
_last = 0  # the last (milliseconds * 4096 + sub-millisecond step) this process used


def uuid7() -> uuid.UUID:
    """A new version 7 UUID; each one this process makes is greater than the one before."""
    global _last
    now_ns = time.time_ns()
    stamp = (now_ns // 1_000_000) * _SUB_MS_STEPS + (now_ns % 1_000_000) * _SUB_MS_STEPS // 1_000_000
    with _lock:
        # A clock that stands still or steps back (NTP) must not break the order.
        stamp = max(stamp, _last + 1)
        _last = stamp
    unix_ms, sub_ms = divmod(stamp, _SUB_MS_STEPS)
    random_bits = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | sub_ms << 64 | 0b10 << 62 | random_bits
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int | None:
    """The Unix time in milliseconds a version 7 id was made at; None for other versions."""
    return value.int >> 80 if value.version == 7 else None
