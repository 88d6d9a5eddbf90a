"""Running test actions at the same moment, for the race tests."""

import threading
from concurrent.futures import ThreadPoolExecutor


def run_together(count: int, action):
    """Call action(index) from `count` threads released at the same moment; the results in
    index order."""
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))
