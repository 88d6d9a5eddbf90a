import pytest
from django.db import connection
from rest_framework.test import APIClient

from .factories import ExecutionFactory, UserFactory, api_key_for


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="PostgreSQL only; runs in the PostgreSQL pass of scripts/test.sh")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


@pytest.fixture
def other_user(db):
    return UserFactory(username="other")


@pytest.fixture
def manager(db):
    return UserFactory(username="manager", permissions=["manage_all_executions"])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def client_for(db):
    """An API client authenticated with a new token of the given user (factories.api_key_for:
    marked as used just now, so its requests run only their own SQL statements)."""

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")
        return client

    return make


@pytest.fixture
def owner_client(client_for, owner):
    return client_for(owner)


@pytest.fixture
def running_execution(owner):
    return ExecutionFactory(created_by=owner)
