from rest_framework.routers import SimpleRouter

from .views import ExecutionViewSet

router = SimpleRouter(trailing_slash=False)
router.register("executions", ExecutionViewSet, basename="execution")

urlpatterns = router.urls
