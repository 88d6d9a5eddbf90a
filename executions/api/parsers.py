from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import BaseParser

from .validation import decode_json


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large"
    default_code = "payload_too_large"


class JSONBodyParser(BaseParser):
    """JSON bodies, with FastAPI's 422 `json_invalid` error for what does not parse, and a
    413 for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (DRF reads the stream unbounded)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body larger than {limit} bytes")
        return decode_json(raw)
