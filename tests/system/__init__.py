"""System tests: real servers, processes, a browser, fuzzing. Every test here is marked slow,
so the quick loop (`pytest -m "not slow"`) skips them."""
