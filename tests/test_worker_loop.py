"""The worker's loop (executions/worker/loop.py), driven by an injected clock: when each
task runs again, what a failing task does to the others, and stopping between calls.
No database, no waiting."""

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from time import monotonic

import pytest
from prometheus_client import REGISTRY

from executions.worker.loop import MAX_ERROR_BACKOFF_SECONDS, WorkerLoop

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IDLE = 1.0


class FakeTime:
    """The clock the loop reads, and the sleep that moves it on (recording each wait)."""

    def __init__(self):
        self.now = START
        self.waits = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)

    def elapsed(self) -> float:
        return (self.now - START).total_seconds()


class Recorder:
    """A task that records when it was called (seconds since START) and answers from a script."""

    def __init__(self, time, answers, name="recorder"):
        self.time = time
        self.answers = list(answers)
        self.calls = []
        self.__name__ = name

    def __call__(self, now):
        self.calls.append((now - START).total_seconds())
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_loop(time, *tasks):
    return WorkerLoop(list(tasks), idle_interval=IDLE, clock=time.clock, sleep=time.sleep)


def run_rounds(loop, time, rounds):
    for _ in range(rounds):
        time.sleep(loop.run_due())


def test_a_task_with_nothing_due_runs_again_after_the_idle_interval():
    time = FakeTime()
    task = Recorder(time, [None, None, None])
    run_rounds(make_loop(time, task), time, 3)
    assert task.calls == [0.0, 1.0, 2.0]


def test_a_task_runs_again_when_it_says_its_next_work_is_due():
    time = FakeTime()
    task = Recorder(time, [0.25, 0.5, None])
    run_rounds(make_loop(time, task), time, 3)
    assert task.calls == [0.0, 0.25, 0.75]


def test_a_task_with_more_due_already_runs_again_at_once():
    time = FakeTime()
    task = Recorder(time, [0, 0, None])
    run_rounds(make_loop(time, task), time, 3)
    assert task.calls == [0.0, 0.0, 0.0]
    assert time.waits[:2] == [0.0, 0.0]


def test_no_task_makes_the_loop_wait_longer_than_the_idle_interval():
    """New work can appear any time (a short deadline just created): a task that knows of
    nothing for an hour is still asked again after the idle interval."""
    time = FakeTime()
    task = Recorder(time, [3600, 3600])
    run_rounds(make_loop(time, task), time, 2)
    assert task.calls == [0.0, 1.0]


def test_each_task_keeps_its_own_schedule():
    time = FakeTime()
    quick = Recorder(time, [0.5] * 10, name="quick")
    idle = Recorder(time, [None] * 10, name="idle")
    run_rounds(make_loop(time, quick, idle), time, 4)
    assert quick.calls == [0.0, 0.5, 1.0, 1.5]
    assert idle.calls == [0.0, 1.0]


def errors_counted(task):
    return REGISTRY.get_sample_value("executions_worker_task_errors_total", {"task": task}) or 0.0


def test_a_failing_task_is_logged_counted_and_retried_later_and_the_others_go_on(caplog):
    time = FakeTime()
    failing = Recorder(time, [RuntimeError("database went away")] * 3 + [None], name="failing")
    healthy = Recorder(time, [None] * 20, name="healthy")
    loop = make_loop(time, failing, healthy)
    errors_before = errors_counted("failing")
    with caplog.at_level(logging.ERROR, logger="executions.worker"):
        run_rounds(loop, time, 8)
    assert errors_counted("failing") - errors_before == 3
    # Retried after 1 s, then 2 s, then 4 s: not every round while it keeps failing.
    assert failing.calls == [0.0, 1.0, 3.0, 7.0]
    assert healthy.calls == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(failures) == 3
    assert "Task failing failed (1 time(s) in a row); next try in 1.0 s" in failures[0].getMessage()
    assert failures[0].exc_info[1].args == ("database went away",)


def test_the_retry_backoff_has_a_ceiling():
    time = FakeTime()
    failing = Recorder(time, [RuntimeError("down")] * 50, name="always-failing")
    run_rounds(make_loop(time, failing), time, 120)
    gaps = [after - before for before, after in zip(failing.calls, failing.calls[1:], strict=False)]
    assert max(gaps) == MAX_ERROR_BACKOFF_SECONDS
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_stop_takes_effect_between_calls_never_inside_one():
    time = FakeTime()
    loop = None

    def stops_the_loop(now):
        loop.stop()
        return 0

    after = Recorder(time, [0])
    loop = make_loop(time, stops_the_loop, after)
    loop.run()  # returns: the stop request is seen before the next call
    assert after.calls == []
    assert loop.rounds == 1


def test_a_stop_wakes_the_real_sleep_at_once_even_with_a_long_idle_interval():
    """The default sleep (no fake clock): a loop idling 60 s between rounds stops within a
    fraction of a second of stop(), which only sets a flag (safe from a signal handler)."""
    loop = WorkerLoop([lambda now: None], idle_interval=60)
    runner = threading.Thread(target=loop.run)
    runner.start()
    while loop.rounds == 0:
        pass  # the first round ran: the loop is now asleep for 60 s
    stopped_at = monotonic()
    loop.stop()
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert monotonic() - stopped_at < 1
    assert loop.rounds == 1


def test_stop_from_a_signal_handler_stops_the_real_loop():
    """SIGALRM's handler calls stop() while the main thread sleeps in the loop: run() returns."""
    loop = WorkerLoop([lambda now: None], idle_interval=60)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: loop.stop())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        started = monotonic()
        loop.run()
        assert monotonic() - started < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_clock_set_back_does_not_hold_a_task_back():
    time = FakeTime()
    task = Recorder(time, [None] * 5)
    loop = make_loop(time, task)
    time.sleep(loop.run_due())
    time.now -= timedelta(hours=1)  # the system clock is corrected backwards
    time.sleep(loop.run_due())
    time.sleep(loop.run_due())
    # Called again one idle interval after the clock went back, not an hour later.
    assert task.calls == [0.0, -3598.0]
    assert time.waits == [1.0, 1.0, 1.0]


def test_the_idle_interval_must_be_positive():
    with pytest.raises(ValueError):
        WorkerLoop([], idle_interval=0)


def test_a_loop_without_tasks_idles():
    time = FakeTime()
    run_rounds(make_loop(time), time, 2)
    assert time.waits == [1.0, 1.0]
