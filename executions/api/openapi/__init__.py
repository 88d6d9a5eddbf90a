"""The OpenAPI declarations of the API's operations, one module per resource, apart from the
views so that a view reads as behaviour. Each module's `extend_schema_view` decorator is
applied to its viewset; drf-spectacular builds /api/schema/ from them."""
