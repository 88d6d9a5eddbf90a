"""The users' pages: Django's own, except what a deletion's confirmation page shows.

Django's page (admin.utils.get_deleted_objects) loads every object a deletion takes along,
whole, to name each: a worker's Idempotency-Keys carry the answers they replay, and 700 of
them took a gunicorn worker from 156 to 404 MB for one page view (twice: the confirming POST
builds the page again before it deletes). It then refused the deletion anyway, because the
API tokens' admin deletes nothing. Here the page counts each kind in the database and names
the first few of each, and a user's tokens go with the user.
"""

from collections import defaultdict
from itertools import islice

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import models, router
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from ..models import ApiToken

# Objects of one kind named on the confirmation page; the others are counted.
NAMED_PER_KIND = 10
# What is part of a user and goes with them, whatever its own admin allows: the tokens' admin
# deletes nothing (a token is revoked and kept, to say who had it), but a deleted user's
# tokens can never be used again, and their rows would only keep a dead user's keys' hashes.
GOES_WITH_THE_USER = {ApiToken}
# Fields left unread when naming objects: a str() never needs them, and they may be large.
_LARGE_FIELDS = (models.JSONField, models.TextField, models.BinaryField)

User = get_user_model()


def _large_fields(model) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields if isinstance(field, _LARGE_FIELDS)]


def _named(admin_site, obj):
    """How Django's page names an object: a link to its admin page where it has one."""
    opts = obj._meta
    if admin_site.is_registered(obj.__class__):
        try:
            url = reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        except NoReverseMatch:
            pass
        else:
            return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)
    return f"{capfirst(opts.verbose_name)}: {obj}"


admin.site.unregister(User)


@admin.register(User)
class ExecutionsUserAdmin(UserAdmin):
    def get_deleted_objects(self, objs, request):
        """(objects to name, count per kind, kinds the operator may not delete, protected
        objects) for Django's confirmation page and for the delete itself, as Django's own
        returns them, at a cost that does not grow with what the users own.

        The deletion's own collector decides what goes, so the page says what the delete will
        do; it loads nothing it can delete with one statement (tokens, Idempotency-Keys, log
        entries), and those are counted by the database and named a few at a time."""
        users = list(objs)
        if not users:
            return [], {}, set(), []
        collector = Collector(using=router.db_for_write(self.model), origin=users)
        try:
            collector.collect(users)
        except ProtectedError as refused:
            return [], {}, set(), self._blocking(refused.protected_objects)
        except RestrictedError as refused:
            return [], {}, set(), self._blocking(refused.restricted_objects)

        kinds = defaultdict(list)  # model -> lists of instances, or querysets
        for model, instances in collector.data.items():
            kinds[model].append(list(instances))
        for queryset in collector.fast_deletes:
            kinds[queryset.model].append(queryset)

        named_users = [_named(self.admin_site, user) for user in users]
        deleted, model_count, perms_needed = [*named_users], {}, set()
        model_count[self.model._meta.verbose_name_plural] = len(users)
        for model, parts in kinds.items():
            if model is self.model:
                continue
            count = sum(len(part) if isinstance(part, list) else part.count() for part in parts)
            if not count:
                continue
            opts = model._meta
            model_count[opts.verbose_name_plural] = count
            if model not in GOES_WITH_THE_USER and self.admin_site.is_registered(model):
                if not self.admin_site.get_model_admin(model).has_delete_permission(request):
                    perms_needed.add(opts.verbose_name)
            named = []
            for part in parts:
                if len(named) == NAMED_PER_KIND:
                    break
                if not isinstance(part, list):
                    part = part.defer(*_large_fields(model)).order_by("pk")[: NAMED_PER_KIND - len(named)]
                named += [_named(self.admin_site, obj) for obj in islice(part, NAMED_PER_KIND - len(named))]
            if count > len(named):
                named.append(f"… and {count - len(named)} more")
            deleted += [f"{capfirst(opts.verbose_name_plural)}: {count}", named]
        return deleted, model_count, perms_needed, []

    def _blocking(self, objects) -> list:
        """The first few objects that stop a deletion, named (Django's page lists them)."""
        return [_named(self.admin_site, obj) for obj in islice(objects, NAMED_PER_KIND)]
