"""The registration's schema check, field by field: what the registry's rules
(``domain.assess``) may read, and per field why the rest is refused, so a rejection names
every problem and not only the first the schema meets."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError


def validate_fields(
    model: type[BaseModel], raw: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate ``raw`` (parsed JSON) field by field, strictly, as JSON would be.

    Returns the values that are valid and, per field, why the others are not. Unlike a plain
    ``model_validate`` this keeps the good fields, so rules over them can still run and a
    rejection can name every problem, not only the schema's.
    """
    try:
        whole = model.model_validate_json(json.dumps(raw), strict=True)
        return whole.model_dump(), {}
    except ValidationError:
        pass
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                errors[name] = "field required"
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        # Annotated with the field's metadata, so constraints such as min_length still apply.
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]
        try:
            values[name] = adapter.validate_json(json.dumps(raw[name]), strict=True)
        except ValidationError as exc:
            errors[name] = "; ".join(err["msg"] for err in exc.errors())
    return values, errors
