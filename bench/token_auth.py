"""What authenticating one request costs: our hashed API tokens against DRF's authtoken, the
scheme they replaced, in one process, on one database, timed in alternation.

Each round authenticates the same request --calls times with each class (DRF's looks its
clear key up with the ORM; ours hashes the key and runs one SQL statement built once); the
best round of each is reported, in microseconds per request, SQL round trip included. On a
shared machine the alternation and the best-of-rounds keep the comparison fair where
requests/s swing with the neighbours' load.

    python bench/token_auth.py                           # SQLite
    scripts/with-postgres.sh python bench/token_auth.py  # PostgreSQL

Options: --calls N per round (2000), --rounds N (7).
"""

import os
import time

import harness

DRF_AUTHTOKEN = "rest_framework.authtoken"


def main():
    args = harness.parse_options(__doc__, calls=2000, rounds=7)

    with harness.bench_database() as (database_url, _folder):
        # DRF's authtoken is no longer installed; this process installs it again, for the
        # comparison only, before Django reads the settings module.
        os.environ.update(harness.service_env(database_url))
        import config.settings

        config.settings.INSTALLED_APPS.append(DRF_AUTHTOKEN)
        harness.django_setup(database_url)
        from django.core.management import call_command
        from django.db import connection
        from django.test import RequestFactory
        from rest_framework.authentication import TokenAuthentication
        from rest_framework.authtoken.models import Token

        from executions.api.authentication import HashedTokenAuthentication

        call_command("migrate", "authtoken", verbosity=0)
        user, our_key = harness.create_bench_user()
        drf_key = Token.objects.create(user=user).key

        def request_with(key):
            return RequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {key}")

        cases = {
            "DRF authtoken": (TokenAuthentication(), request_with(drf_key)),
            "hashed tokens": (HashedTokenAuthentication(), request_with(our_key)),
        }
        best = {name: float("inf") for name in cases}
        for _ in range(args.rounds):
            for name, (authentication, request) in cases.items():
                started = time.perf_counter()
                for _ in range(args.calls):
                    authenticated_user, _ = authentication.authenticate(request)
                elapsed = time.perf_counter() - started
                assert authenticated_user.pk == user.pk
                best[name] = min(best[name], elapsed / args.calls)
        vendor = connection.vendor
        connection.close()

    print(f"Authentication of one request on {vendor}: best of {args.rounds} rounds of {args.calls}")
    for name, seconds in best.items():
        print(f"{name:14} {seconds * 1e6:8.1f} µs")
    print(f"hashed/DRF: {best['hashed tokens'] / best['DRF authtoken']:.2f}")


if __name__ == "__main__":
    main()
