"""The worker: one long-running process (`manage.py run_worker`) that does what is due when
nobody asks for it: executions past their deadline fail, silent ones are interrupted, and
whatever other tasks are listed in `tasks.py` (monitors, notifications) run beside them.

`loop.WorkerLoop` runs the tasks; each task is a callable `task(now) -> float | None` that
does one bounded batch of what is due at `now` and says how many seconds until it next has
something due (0: more is due already; None: nothing known). Any number of workers may run
on one database: each transition is a compare-and-set, so it happens once whoever wins.
"""
