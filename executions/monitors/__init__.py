"""Monitors: jobs expected on a schedule, and the watch that notices what did not happen."""
