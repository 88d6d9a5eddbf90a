from rest_framework.routers import SimpleRouter

from .monitors import MonitorViewSet
from .views import ExecutionViewSet, StatusChangeFeedViewSet

router = SimpleRouter(trailing_slash=False)
router.register("executions", ExecutionViewSet, basename="execution")
router.register("status-changes", StatusChangeFeedViewSet, basename="status-change")
router.register("monitors", MonitorViewSet, basename="monitor")

urlpatterns = router.urls
