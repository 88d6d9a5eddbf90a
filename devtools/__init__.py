"""Development tooling that the tests, the benchmarks (bench/) and scripts/ share: free
ports, a throwaway PostgreSQL, the service's environment, and the service's servers
(gunicorn, the production setup, redis) started on 127.0.0.1.

Never imported by the service itself or by deploy/: production code does not depend on it.
"""
