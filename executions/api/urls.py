from rest_framework.routers import SimpleRouter

from .monitors import MonitorViewSet
from .notification_endpoints import NotificationDeliveryViewSet, NotificationEndpointViewSet
from .views import ExecutionViewSet, StatusChangeFeedViewSet

router = SimpleRouter(trailing_slash=False)
router.register("executions", ExecutionViewSet, basename="execution")
router.register("status-changes", StatusChangeFeedViewSet, basename="status-change")
router.register("notification-endpoints", NotificationEndpointViewSet, basename="notification-endpoint")
router.register(
    r"notification-endpoints/(?P<endpoint_id>[^/]+)/deliveries",
    NotificationDeliveryViewSet,
    basename="notification-delivery",
)
router.register("monitors", MonitorViewSet, basename="monitor")

urlpatterns = router.urls
