import pytest

from executions.api.error_codes import ErrorCode

from .api import ERROR_RESPONSE_KEYS
from .database_down import database_down  # noqa: F401


def test_healthz_answers_without_the_database(client):
    # No `db` fixture: pytest-django fails any query, so this also proves none is made.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_answers_when_the_database_does(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_readyz_is_503_error_response_when_the_database_is_down(client, database_down):  # noqa: F811
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == ErrorCode.SERVICE_UNAVAILABLE
    assert set(body) == ERROR_RESPONSE_KEYS
    assert response["Retry-After"]


def test_liveness_stays_ok_when_the_database_is_down(client, database_down):  # noqa: F811
    assert client.get("/healthz").status_code == 200


def test_api_answers_503_when_the_database_is_down(client, database_down):  # noqa: F811
    response = client.get("/api/v1/executions", HTTP_AUTHORIZATION="Token abc")
    assert response.status_code == 503
    assert response.json()["error_code"] == ErrorCode.SERVICE_UNAVAILABLE
