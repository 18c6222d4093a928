"""How a request model checks its fields: through the shared rules of metalstream.contracts.

A rule raises BadInput; `checked` turns it into a pydantic error that remembers the rule's message and
the part of the location below the field (a list index, a nested key), and `parse` turns the first
error back into BadInput located at the field path the API has always used (`network[0].vlan_id`).
Models validate in field order and report the first refusal, as the hand-written checks did.
A list endpoint's query parameters are a `Query` model too: the views parse `request.args.to_dict()` with it,
and pxe.openapi_paths documents its fields as the operation's parameters.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from functools import wraps
from typing import Annotated, Any, Callable, TypeVar, get_type_hints

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, ValidationError, create_model, \
    model_validator
from pydantic_core import PydanticCustomError

from metalstream.contracts import rules
from metalstream.errors import BadInput

__all__ = ["HERE", "Query", "Request", "checked", "choice", "fields_of", "model_of", "optional", "parse", "query_names",
           "require", "rule", "shape", "unchecked"]

HERE = "\x00here\x00"  # the location a rule is given: what it appends (".key", "[2]") is the path below it
Model = TypeVar("Model", bound=BaseModel)


class Request(BaseModel):
    """A request body: unknown fields refused (by the model's own check, with the API's message)."""

    model_config = ConfigDict(extra="forbid", validate_default=False)


class Query(BaseModel):
    """A list endpoint's query parameters, each a string as sent (the first of a repeated one): a field is
    absent unless given, an unknown parameter is refused naming it."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        return checked(query_names)(data, cls)

    def given(self) -> dict:
        """The parameters given, typed."""
        return self.model_dump(exclude_unset=True)


def query_names(args: dict, model: type[BaseModel]) -> dict:
    """`args` if it names only the model's fields (an empty name is located at `query`)."""
    unknown = sorted(set(args) - set(model.model_fields))
    if unknown:
        raise BadInput(f"unknown query parameter (allowed: {', '.join(model.model_fields)})",
                       location=unknown[0] or "query")
    return args


def _refusal(exc: BadInput) -> PydanticCustomError:
    where = exc.location or ""
    inner = where[len(HERE):] if where.startswith(HERE) else f".{where}"
    return PydanticCustomError("rule", "{message}", {"message": exc.reason, "inner": inner})


def checked(check: Callable) -> Callable:
    """`check` (raising BadInput) as a pydantic validator function."""
    @wraps(check)
    def run(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except BadInput as exc:
            raise _refusal(exc) from None
    return run


def rule(check: Callable, /, **limits) -> BeforeValidator:
    """A field checked by `check(value, location, **limits)` from metalstream.contracts.rules (or alike)."""
    return BeforeValidator(checked(lambda value: check(value, HERE, **limits)))


def choice(choices: tuple[str, ...], /, *, nullable: bool = False) -> BeforeValidator:
    """One of `choices` (rules.one_of); with `nullable`, null too."""
    return (optional if nullable else rule)(lambda value, location: rules.one_of(value, choices, location))


def optional(check: Callable, /, **limits) -> BeforeValidator:
    """Like `rule`, null passing as null."""
    return BeforeValidator(checked(lambda value: None if value is None else check(value, HERE, **limits)))


def shape(check: Callable) -> Any:
    """A model's before-validator `check(cls, data)`: the object as a whole (its keys, the required ones)."""
    return model_validator(mode="before")(checked(check))


def model_of(dataclass: type, doc: str, **overrides: tuple) -> type[BaseModel]:
    """A model of a metalstream.contracts dataclass (one definition of the fields); `overrides` give
    a field a narrower type for the document (name=(type, default))."""
    hints = get_type_hints(dataclass)

    def field(f) -> tuple:
        return overrides.get(f.name) or (hints[f.name], f.default if f.default is not MISSING else f.default_factory())
    return create_model(dataclass.__name__, __config__=ConfigDict(extra="forbid"), __doc__=doc,
                        **{f.name: field(f) for f in fields(dataclass)})


def fields_of(data: Any, model: type[BaseModel], location: str = "") -> dict:
    """A JSON object of the model's fields only (the API's 'unknown field' refusal); for a model's
    before-validator."""
    return rules.expect_object(data, location, tuple(model.model_fields))


def require(data: dict, name: str, message: str = "is required") -> None:
    if name not in data:
        raise BadInput(message, location=name)


def _path(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def parse(model: type[Model], body: Any) -> Model:
    """`body` as `model`, or BadInput naming the first refused field (its rule's own message)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        if error["type"] == "rule":
            location, message = _path(error["loc"]) + error["ctx"]["inner"], error["ctx"]["message"]
        else:  # a model's own type check: a rule let through what the model's type does not hold
            location, message = _path(error["loc"]), error["msg"]
        raise BadInput(message, location=location.removeprefix(".") or None) from None


def unchecked(kind: Any) -> Any:
    """A field documented as `kind` but taken as sent: a later check of the whole object decides."""
    return Annotated[kind, PlainValidator(lambda value: value, json_schema_input_type=kind)]
