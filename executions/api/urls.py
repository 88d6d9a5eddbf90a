from rest_framework.routers import SimpleRouter

from .views import ExecutionViewSet, StatusChangeFeedViewSet

router = SimpleRouter(trailing_slash=False)
router.register("executions", ExecutionViewSet, basename="execution")
router.register("status-changes", StatusChangeFeedViewSet, basename="status-change")

urlpatterns = router.urls
