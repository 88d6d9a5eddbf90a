"""Which worker process this is, as its audit records name it."""

import os
import socket
from functools import cache

from ..models import ExecutionStatusChange

DETECTED_BY = "run_worker"


@cache
def worker_identity() -> str:
    """`worker <host>:<pid>`: kept as the correlation id of every change this process makes,
    so that the history says which worker acted (several may run on one database)."""
    limit = ExecutionStatusChange._meta.get_field("correlation_id").max_length
    return f"worker {socket.gethostname()}:{os.getpid()}"[:limit]
