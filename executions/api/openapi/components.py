"""What the schema says of the JSON objects a request carries (`metadata`, `error_info`):
only what the API stores, no NUL in any key or string at any depth (422 string_unstorable).
Unpaired surrogates are refused too; the regular expressions of JSON Schema cannot name them.
pydantic describes the objects as free-form; this hook (drf-spectacular's
POSTPROCESSING_HOOKS, config/settings.py) makes their values StorableJson, a recursive
component pydantic cannot define beside the models."""

STORABLE_JSON = "StorableJson"
_STORABLE_JSON_REF = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
NO_NUL_PATTERN = "^[^\\u0000]*$"
STORABLE_OBJECT = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL_PATTERN},
    "additionalProperties": _STORABLE_JSON_REF,
}
STORABLE_JSON_SCHEMA = {
    "description": "A JSON value whose strings and keys hold no NUL (\\u0000) or unpaired surrogate",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": _STORABLE_JSON_REF},
        STORABLE_OBJECT,
    ],
}
# The request bodies' free-form objects: (component, property).
STORABLE_PROPERTIES = [("ExecutionStatusUpdateRequest", "error_info"), ("ExecutionCreateRequest", "metadata")]


def add_storable_json(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[STORABLE_JSON] = STORABLE_JSON_SCHEMA
    for component, name in STORABLE_PROPERTIES:
        prop = schemas[component]["properties"][name]
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "object":
                branch.pop("additionalProperties", None)
                branch.update(STORABLE_OBJECT)
    return result
