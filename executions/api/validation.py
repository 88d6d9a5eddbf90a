"""Request bodies in, pydantic models out; or a 422 with FastAPI's error items."""

import json
from typing import Any

import pydantic


class RequestValidationError(Exception):
    """A body that is not the JSON the operation takes. `errors` are pydantic v2 error items
    (type, loc, msg, input, ctx), each `loc` starting with "body", as FastAPI gives them."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(errors)
        self.errors = errors


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON, and no database JSON column takes them.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"Number out of range: {text}")
    return number


# Nesting no valid body reaches (the bodies' JSON may nest MAX_JSON_DEPTH levels) is refused
# before json.loads: its parser recurses once per level, so past some depth it fails with the
# interpreter's recursion limit, at a depth that depends on how deep the caller's stack is
# already. Refused here, any such body gets the same answer wherever it is parsed.
MAX_PARSED_DEPTH = 64
_OPENING = (ord("["), ord("{"))
_CLOSING = (ord("]"), ord("}"))


def _nesting_depth(raw: bytes) -> int:
    """How deep the arrays and objects of `raw` nest (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSING:
            depth -= 1
    return deepest


def _refuse_deep_nesting(raw: bytes) -> None:
    # Counting brackets is C-fast; only a body with that many gets the scan.
    if raw.count(b"[") + raw.count(b"{") > MAX_PARSED_DEPTH and _nesting_depth(raw) > MAX_PARSED_DEPTH:
        raise RequestValidationError(
            [
                {
                    "type": "json_too_deep",
                    "loc": ["body"],
                    "msg": f"JSON may nest at most {MAX_PARSED_DEPTH} levels",
                    "input": {},
                    "ctx": {"max_depth": MAX_PARSED_DEPTH},
                }
            ]
        )


def decode_json(raw: bytes) -> Any:
    """json.loads as FastAPI does it, with its `json_invalid` item for whatever fails, and
    `json_too_deep` for nesting no body may have."""
    _refuse_deep_nesting(raw)
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        position, reason = exc.pos, exc.msg
    except UnicodeDecodeError as exc:
        position, reason = exc.start, "Invalid UTF-8"
    except RecursionError:
        position, reason = 0, "JSON nested too deeply"
    except ValueError as exc:  # NaN, Infinity, numbers too large for Python to convert
        position, reason = 0, str(exc)
    raise RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ["body", position],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }
        ]
    )


def validate_body(
    model: type[pydantic.BaseModel], data: Any, context: dict | None = None
) -> pydantic.BaseModel:
    """Validate decoded JSON against `model`, reporting every problem at once. `context`
    reaches the model's validators (what they check against: the resource being changed)."""
    if data is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        )
    try:
        # from_attributes, as FastAPI validates bodies: a non-object body is then
        # "model_attributes_type", the item the contract shows.
        return model.model_validate(data, from_attributes=True, context=context)
    except pydantic.ValidationError as exc:
        raise RequestValidationError(validation_items(exc, "body")) from None


def validation_items(exc: pydantic.ValidationError, location: str) -> list[dict[str, Any]]:
    """pydantic's errors as FastAPI's items, each `loc` starting with `location`."""
    errors = []
    for error in exc.errors(include_url=False):
        item = {
            "type": error["type"],
            "loc": [location, *error["loc"]],
            "msg": error["msg"],
            "input": _json_safe(error["input"]),
        }
        if "ctx" in error:
            item["ctx"] = {key: _json_safe(value) for key, value in error["ctx"].items()}
        errors.append(item)
    return errors


def parse_body(
    request, model: type[pydantic.BaseModel], context: dict | None = None, *, optional: bool = False
) -> pydantic.BaseModel:
    """The request's body as `model`. A request with no body at all is a missing body, or, for
    an `optional` one (a model whose every field is optional), an empty object."""
    if request.META.get("CONTENT_LENGTH", "") in ("", "0"):
        return validate_body(model, {} if optional else None, context)
    return validate_body(model, request.data, context)
