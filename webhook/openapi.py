"""The REST shim's OpenAPI 3.1 document, built from `routes.ENDPOINTS` and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from resolvers.platform import periods

Handler = Callable[[Request], Awaitable[Response]]
Auth = Literal["none", "jwt", "gateway"]


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    #: The schema is an object whose properties are query parameters of their own (OpenAPI's `style: form`,
    #: `explode: true`), so one schema can relate them (`if`/`then`); `name` only names the group.
    exploded: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The query parameters this one stands for."""
        return tuple(self.schema["properties"]) if self.exploded else (self.name,)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth = "none"
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_is_list: bool = False
    status: int = 200
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = (400,)
    #: Other documented answers with a body of their own (e.g. the webhook's 429 naming the budget).
    other_responses: tuple[tuple[int, type[BaseModel]], ...] = ()
    headers: tuple[QueryParam, ...] = ()
    #: Media types of a file download (streamed, with Content-Disposition) instead of a JSON response.
    download: tuple[str, ...] = ()
    #: A request body that is no pydantic model: its `content` map (media type -> {"schema": ...}).
    raw_body: dict[str, Any] | None = None
    #: What the route refuses that no schema can say (it depends on stored data or compares two fields).
    description: str = ""
    #: A documented error status's own description (status -> when it is answered), instead of "Error".
    error_notes: tuple[tuple[int, str], ...] = ()


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def choice(*values: str, trimmed: bool = True, any_case: bool = True, blank: bool = False) -> dict[str, Any]:
    """Text that is one of `values`: as the routes read it, `trimmed` of surrounding blanks, in `any_case`;
    `blank`: the empty string is taken too (a query parameter's default)."""
    words = "|".join(_any_case(v) if any_case else re.escape(v) for v in values)
    word = rf"\s*({words})\s*" if trimmed else f"({words})"
    return {"type": "string", "pattern": f"^({word})?$" if blank else f"^{word}$"}


#: What `resolvers.platform.validation.refuse_controls` refuses in a name or an id: C0 (NUL included), DEL, C1 and the
#: Unicode line and paragraph separators.
CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
#: What Python's `str.strip()` trims (`str.isspace`), which ECMA-262's `\s` does not quite match (it lacks
#: U+001C-U+001F and U+0085 and has U+FEFF).
BLANKS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: A name or id as `resolvers.platform.validation.text` takes it: blanks around it trimmed, then something that is not
#: blank and holds no control character.
NAME_PATTERN = rf"^[{BLANKS}]*[^{CONTROLS}]*[^{BLANKS}{CONTROLS}][^{CONTROLS}]*[{BLANKS}]*$"


def time_zone() -> dict[str, Any]:
    """An IANA time zone field as every route reads it (`resolvers.platform.periods.time_zone`): one of the
    server's zone names (`zoneinfo.available_timezones()`, case as spelled there), blanks around it trimmed; empty
    or blank means the default zone."""
    names = "|".join(re.escape(name) for name in sorted(periods.zone_names()))
    return {"type": "string", "pattern": rf"^[{BLANKS}]*({names})?[{BLANKS}]*$"}


def refine(
    *,
    not_null: Iterable[str] = (),
    not_blank: Iterable[str] = (),
    props: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Callable[[dict[str, Any]], None]:
    """A model's `json_schema_extra`: what its route refuses beyond pydantic's own checks, so the document says
    it. `not_null`: optional fields that may be omitted but not sent as null; `not_blank`: text that must hold
    more than blanks; `props`: keywords merged into a field's schema (into its non-null alternative); `extra`:
    keywords for the whole object (e.g. `anyOf` of required fields, `not` of two exclusive ones)."""
    never_null, never_blank = tuple(not_null), tuple(not_blank)

    def patch(schema: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        for name, keywords in (props or {}).items():
            prop = properties[name]
            options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}] or [prop]
            for option in options:
                option.update(keywords)
        schema.update(extra or {})
        for name in never_null:
            prop = properties[name]
            kept = [option for option in prop.get("anyOf", ()) if option != {"type": "null"}]
            if kept:
                prop.pop("anyOf")
                prop.pop("default", None)
                if len(kept) == 1:
                    prop.update(kept[0])
                else:
                    prop["anyOf"] = kept
        for name in never_blank:
            prop = properties[name]
            for option in [prop, *prop.get("anyOf", ())]:
                if option.get("type") == "string":
                    option["pattern"] = NAME_PATTERN

    return patch


#: The vendor keyword `amount()` puts on a decimal's number schema: how many decimal places the route takes.
_PLACES = "x-decimal-places"


def amount(*, places: int, maximum: int, above_zero: bool = False) -> dict[str, Any]:
    """A decimal field's bounds as its route checks them (`refine(props=...)`): above 0 (or at least 0), at most
    `maximum`, at most `places` decimal places; `_decimal_text` writes the same bounds as a text pattern."""
    if str(maximum) != f"1{'0' * (len(str(maximum)) - 1)}":
        raise ValueError(f"an amount's maximum is a power of ten, so a pattern can bound it (got {maximum})")
    low: dict[str, Any] = {"exclusiveMinimum": 0} if above_zero else {"minimum": 0}
    return {**low, "maximum": maximum, _PLACES: places}


def _text_pattern(number: dict[str, Any]) -> str:
    """The decimals a number schema allows, written as text: a sign only when negatives are allowed, no more
    integer digits than the maximum has, at most `x-decimal-places` places, a non-zero digit when above 0."""
    places = number.pop(_PLACES, None)
    low = number.get("minimum", number.get("exclusiveMinimum"))
    high = number.get("maximum", number.get("exclusiveMaximum"))
    sign = r"\+?" if low is not None and low >= 0 else "[+-]?"
    if places is None or high is None:
        digits = "+" if high is None else f"{{1,{len(str(int(high))) - 1}}}"
        return rf"^\s*{sign}([0-9]{digits}(\.[0-9]*)?|\.[0-9]+)\s*$"
    whole = len(str(int(high))) - 1  # digits below the maximum: 10**whole <= maximum (`amount` takes powers of 10)
    fraction = rf"(\.[0-9]{{0,{places}}})?"
    non_zero_fraction = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))
    positive = rf"0*[1-9][0-9]{{0,{whole - 1}}}{fraction}|0*\.({non_zero_fraction})"
    if "maximum" in number and str(int(high)) == f"1{'0' * whole}":  # the maximum itself, a power of ten
        positive += rf"|0*{int(high)}(\.0{{0,{places}}})?"
    zero = rf"0+(\.0{{0,{places}}})?|\.0{{1,{places}}}"
    above_zero = number.get("exclusiveMinimum") == 0 or (low is not None and low > 0)
    return rf"^\s*{sign}({positive if above_zero else positive + '|' + zero})\s*$"


def _decimal_text(node: Any) -> None:
    """pydantic documents a Decimal as a number or *any* string; the string must be a decimal, within the
    number's bounds (`_text_pattern`)."""
    if isinstance(node, list):
        for item in node:
            _decimal_text(item)
        return
    if not isinstance(node, dict):
        return
    options = node.get("anyOf")
    if isinstance(options, list):
        numbers = [o for o in options if isinstance(o, dict) and o.get("type") == "number"]
        for i, option in enumerate(options):
            if numbers and isinstance(option, dict) and option.get("type") == "string" and "pattern" not in option:
                options[i] = {"type": "string", "pattern": _text_pattern(numbers[0])}
    for value in node.values():
        _decimal_text(value)


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _decimal_text(schema)
    for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two different REST models are both named {name}: rename one")
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "summary": e.summary,
            "operationId": f"{e.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', e.path.lower()).strip('_')}",
            "tags": [e.tag],
            "responses": {},
        }
        if e.description:
            operation["description"] = e.description
        parameters = [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": p.schema,
                **({"style": "form", "explode": True} if p.exploded else {}),
            }
            for p in e.query
        ]
        parameters += [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", e.path)
        ]
        parameters += [
            {"name": h.name, "in": "header", "required": h.required, "description": h.description, "schema": h.schema}
            for h in e.headers
        ]
        if parameters:
            operation["parameters"] = parameters
        if e.raw_body is not None:
            operation["requestBody"] = {"required": True, "content": e.raw_body}
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(e.body, components)}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if e.response is not None:
            ref = _schema_ref(e.response, components)
            ok["content"] = {
                "application/json": {"schema": {"type": "array", "items": ref} if e.response_is_list else ref}
            }
        elif e.download:
            ok["content"] = {
                media: {"schema": {"type": "object"} if media == "application/json" else {"type": "string"}}
                for media in e.download
            }
        else:
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        operation["responses"][str(e.status)] = ok
        for status, model in e.other_responses:
            operation["responses"][str(status)] = {
                "description": model.__doc__ or model.__name__,
                "content": {"application/json": {"schema": _schema_ref(model, components)}},
            }
        # A body past the app's size limit is refused with 413 on any route that reads one.
        too_large = (413,) if e.method in {"POST", "PUT", "PATCH"} and 413 not in e.errors else ()
        notes = dict(e.error_notes)
        if not set(notes) <= set(e.errors):
            raise ValueError(f"{e.method} {e.path}: error_notes for undocumented statuses {set(notes) - set(e.errors)}")
        for status in (*e.errors, *too_large):
            operation["responses"][str(status)] = {
                "description": notes.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if e.auth == "jwt":
            operation["security"] = [{"bearer": []}]
        elif e.auth == "gateway":
            operation["security"] = [{"gatewayKey": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "spendplane REST shim",
            "version": "1",
            "description": "Machine-facing endpoints of spendplane. Dashboards use GraphQL at /graphql.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "gatewayKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "SPENDPLANE_WEBHOOK_KEY (or, when unset, the LiteLLM master key)",
                },
            },
        },
    }
