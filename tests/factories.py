import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from executions.models import Execution, ExecutionStatus


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def permissions(user, create, codenames):
        for codename in codenames or ():
            user.user_permissions.add(Permission.objects.get(codename=codename))


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Execution

    name = factory.Sequence(lambda n: f"job-{n}")
    status = ExecutionStatus.RUNNING
    created_by = factory.SubFactory(UserFactory)
