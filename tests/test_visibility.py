"""Who may see an execution is decided once: the single-row paths (get, PATCH, heartbeat,
history: selectors.executions_visible_to, the permission inside the SQL) and the pages (the
list and the change feed: selectors.executions_listable_by and status_changes_visible_to,
the permission resolved before the query) agree for every kind of user, because both ask
the same SQL whether the user holds manage_all_executions. Ask a different source in one
of them (user.has_perm with another permission backend, say) and these fail."""

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission

from executions.models import ChangeChannel
from executions.selectors import executions_listable_by, executions_visible_to, status_changes_visible_to
from executions.services import execution_change_status

from .factories import ExecutionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _group_with_manage_all():
    group = Group.objects.create(name="operators")
    group.permissions.add(Permission.objects.get(codename="manage_all_executions"))
    return group


def _users():
    plain = UserFactory(username="plain")
    direct = UserFactory(username="direct", permissions=["manage_all_executions"])
    through_group = UserFactory(username="through-group")
    through_group.groups.add(_group_with_manage_all())
    superuser = UserFactory(username="root", is_superuser=True)
    inactive_manager = UserFactory(
        username="inactive", is_active=False, permissions=["manage_all_executions"]
    )
    staff = UserFactory(username="staff", is_staff=True)
    return {
        "plain": plain,
        "direct permission": direct,
        "permission through a group": through_group,
        "superuser": superuser,
        "inactive with the permission": inactive_manager,
        "staff without the permission": staff,
        "anonymous": AnonymousUser(),
    }


EXPECTED_TO_SEE_ALL = {"direct permission", "permission through a group", "superuser"}


def test_single_rows_lists_and_feed_agree_for_every_kind_of_user():
    users = _users()
    executions = [ExecutionFactory(created_by=user) for user in users.values() if user.is_authenticated]
    executions.append(ExecutionFactory(created_by=None))
    for execution in executions:
        execution_change_status(execution_id=execution.pk, status="failed", channel=ChangeChannel.COMMAND)
    everything = {execution.pk for execution in executions}

    for role, user in users.items():
        one_by_one = set(executions_visible_to(user).values_list("pk", flat=True))
        listed = set(executions_listable_by(user).values_list("pk", flat=True))
        fed = set(status_changes_visible_to(user).values_list("execution_id", flat=True))
        assert one_by_one == listed == fed, role
        if role in EXPECTED_TO_SEE_ALL:
            assert listed == everything, role
        elif user.is_authenticated and user.is_active:
            assert listed == set(
                executions_visible_to(user).filter(created_by=user).values_list("pk", flat=True)
            )
            assert len(listed) == 1, role
        else:
            assert listed == set(), role
