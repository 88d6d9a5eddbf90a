"""Liveness and readiness, for load balancers and orchestrators: JSON, no authentication."""

from django.db import DatabaseError, connections
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .exception_handler import database_unavailable_response
from .schemas import ErrorResponse, HealthStatus, ReadinessStatus


class _Open(APIView):
    # No authentication: it would read the database, and these must answer without it.
    authentication_classes = []
    permission_classes = [AllowAny]
    # Not throttled: probes come often, all from one address (a node, a load balancer), and
    # a 429 would take a healthy process out of service.
    throttle_classes = []


class LivenessView(_Open):
    @extend_schema(
        summary="Liveness",
        tags=["health"],
        description="The process answers. Does not touch the database.",
        operation_id="healthz",
        responses={
            200: OpenApiResponse(HealthStatus, description="Alive"),
            406: OpenApiResponse(ErrorResponse, description="The client does not accept JSON"),
        },
    )
    def get(self, request):
        return Response(HealthStatus(status="ok").model_dump(mode="json"))


class ReadinessView(_Open):
    @extend_schema(
        summary="Readiness",
        tags=["health"],
        description="The process and its database answer.",
        operation_id="readyz",
        responses={
            200: OpenApiResponse(ReadinessStatus, description="Ready"),
            406: OpenApiResponse(ErrorResponse, description="The client does not accept JSON"),
            503: OpenApiResponse(ErrorResponse, description="The database does not answer"),
        },
    )
    def get(self, request):
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as exc:
            return database_unavailable_response(exc, Response)
        return Response(ReadinessStatus(status="ok", database="ok").model_dump(mode="json"))
