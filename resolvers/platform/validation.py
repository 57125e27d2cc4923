"""Checks shared by every input the domain accepts. Each failure names the field (snake_case)."""

from __future__ import annotations

import hashlib
import unicodedata
from decimal import Decimal
from typing import Any

from email_validator import EmailNotValidError, validate_email

from models.types import MONEY_PLACES, RATIO_PLACES
from resolvers.platform import outbound
from resolvers.platform.errors import InvalidInput

MAX_USD = Decimal(1_000_000_000)


#: Line and paragraph separators: a line break to anything that splits lines (email headers, CSV readers, logs).
_BREAKS = {"\u2028", "\u2029", "\x85"}


def refuse_controls(field: str, value: str, *, allow: str = "") -> str:
    """Refuse control characters (C0 including NUL, DEL, C1) and Unicode line separators in a name, an id or a
    code: a name `x\\r\\nBcc: ...` would otherwise reach email headers, CSV files and logs. `allow` lets a
    free-text field keep some (a note's line breaks). The one check every name and id goes through."""
    for char in value:
        if char in allow:
            continue
        if char in _BREAKS or unicodedata.category(char) == "Cc":
            raise InvalidInput(field, f"may not contain control characters (found U+{ord(char):04X})")
    return value


def text(
    field: str, value: str | None, *, max_length: int, required: bool = True, multiline: bool = False
) -> str | None:
    """A name or free text: stripped; blank is refused (or None when not required); control characters are
    refused (`multiline` text keeps line feeds and tabs)."""
    cleaned = (value or "").strip()
    if not cleaned:
        if required:
            raise InvalidInput(field, "is required and may not be blank")
        return None
    if len(cleaned) > max_length:
        raise InvalidInput(field, f"is longer than {max_length} characters")
    return refuse_controls(field, cleaned, allow="\n\t" if multiline else "")


def usd(field: str, value: Decimal, *, allow_zero: bool = False) -> Decimal:
    if not value.is_finite():
        raise InvalidInput(field, "must be a finite amount in USD")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(field, "must be greater than 0" if not allow_zero else "may not be negative")
    if value > MAX_USD:
        raise InvalidInput(field, f"may not exceed {MAX_USD} USD")
    if -value.as_tuple().exponent > MONEY_PLACES:  # type: ignore[operator]
        raise InvalidInput(field, f"has more than {MONEY_PLACES} decimal places")
    return value


def fraction(field: str, value: Decimal, *, upper: Decimal = Decimal(10)) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise InvalidInput(field, "must be a fraction above 0 (0.8 means 80%)")
    if value > upper:
        raise InvalidInput(field, f"may not exceed {upper} ({upper * 100}% of the limit)")
    if -value.as_tuple().exponent > RATIO_PLACES:  # type: ignore[operator]
        raise InvalidInput(field, f"has more than {RATIO_PLACES} decimal places")
    return value


def email(field: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(field, f"is not a valid email address ({exc})") from exc


def identifier(field: str, value: str | None, *, max_length: int = 256) -> str | None:
    """An optional id or filter (team, user, model, target): blank is None; control characters, which PostgreSQL
    cannot even store (NUL), are refused."""
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    if len(cleaned) > max_length:
        raise InvalidInput(field, f"is longer than {max_length} characters")
    return refuse_controls(field, cleaned)


# What gateways send on behalf of their clients (user names, call ids, prompts) is never refused: a client must
# not be able to switch budget checks off by sending something odd. It is made storable instead.

#: The longest id spendplane stores (budgets' entity ids, call ids, rollup dimensions).
MAX_ID = 256


def clipped(value: Any, limit: int = MAX_ID) -> str | None:
    """A client-supplied name as spendplane keeps it: text (numbers become text), without NUL, at most `limit`
    characters; None for nothing or anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        return None
    return str(value).replace("\x00", "")[:limit] or None


def clipped_id(value: Any) -> str | None:
    """A client-supplied request id, kept unique: an id longer than MAX_ID keeps its start and gains a digest of
    the whole, so two long ids never collide (the webhook and spend ingestion shorten the same id the same way)."""
    text = clipped(value, limit=1 << 30)
    if text is None or len(text) <= MAX_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[: MAX_ID - len(digest) - 1]}~{digest}"


def http_url(field: str, value: str | None, *, allow_private: bool) -> str | None:
    """An http(s) URL with a host where alerts are POSTed, or None when blank: no userinfo, whitespace or
    control characters; a private, loopback or link-local host only when `allow_private`
    (`resolvers.platform.outbound`)."""
    cleaned = text(field, value, max_length=2000, required=False)
    if cleaned is None:
        return None
    try:
        return outbound.check_url(cleaned, allow_private=allow_private)
    except outbound.OutboundRefused as exc:
        raise InvalidInput(field, str(exc)) from None


def is_uuid(value: str) -> bool:
    """Ids are UUIDs: anything else cannot name a row (and is answered "not found" without a query)."""
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
