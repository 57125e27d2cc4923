"""Service configuration from the environment: every setting declared once, read by `Settings.from_env` and
rendered as the table in docs/settings.md.

How a setting is declared: one field of `Settings` (or of the group it belongs to: `SmtpSettings`,
`AlertDeliverySettings`, `SapSettings`, `SlaSettings`) whose value is `setting(...)`, naming

- the environment variable,
- a parser: it turns the text into the value or raises ValueError in words a person understands ("must be a
  whole number from 1 to 65535"); the reader adds the variable's name and what it got,
- the default as it would be written in the environment (None: unset),
- a one-line description for the table (Markdown).

For example, adding a rate limit is this one line in `Settings`, then `scripts/docs` to regenerate the table
(CI's `scripts/lint` fails while docs/settings.md is stale; tests/platform/test_config.py checks it too):

    rate_limit_rpm: int = setting("SPENDPLANE_RATE_LIMIT_RPM", whole_number(1, 100_000), "600",
                                  "requests a minute one client may send")

A rule that spans several settings (the soft limit not above the hard one) goes in the `from_env` of the class
that holds them, raising ConfigError with the variable to blame. Settings built in code (tests, tools) take the
field defaults, which are the environment defaults parsed, unless `value=` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, Generic, TypeVar

from email_validator import EmailNotValidError, validate_email
from limits import parse_many
from sqlalchemy.engine import URL

from models.db import normalize_database_url
from resolvers.platform import outbound, periods
from resolvers.platform.errors import InvalidInput

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./spendplane.db"
LITELLM_PRICE_MAP_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"


class ConfigError(ValueError):
    """A setting has a value the service cannot start with; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


# ---------------------------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Parser(Generic[T]):
    """A parser that also says what it accepts, for the settings table."""

    parse: Callable[[str], T]
    accepts: str

    def __call__(self, raw: str) -> T:
        return self.parse(raw)


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, parser, default (as text; None = unset) and description."""

    env: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str
    #: What the table shows as the default when the text default alone would mislead ("generated", "by SMTP_TLS").
    shown_default: str | None = None
    #: Never echo the value in an error message (keys, passwords, URLs that may carry one).
    secret: bool = False

    @property
    def accepts(self) -> str | None:
        return self.parse.accepts if isinstance(self.parse, Parser) else None

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.env)
        if raw is None or raw.strip() == "":
            return None if self.default is None else self.parse(self.default)
        try:
            return self.parse(raw.strip())
        except (ValueError, InvalidOperation) as exc:
            problem = str(exc) if isinstance(exc, ValueError) and str(exc) else "is not valid"
            raise ConfigError(self.env, problem if self.secret else f"{problem} (got {raw!r})") from None


_SETTING = "spendplane.setting"
_GROUP = "spendplane.group"
_CODE_ONLY = "spendplane.code_only"
_FROM_DEFAULT: Any = object()
#: `value=REQUIRED`: a field built in code must be given (the group is only built when its settings are set).
REQUIRED: Any = object()


def setting(
    env: str,
    parse: Callable[[str], Any],
    default: str | None,
    doc: str,
    *,
    shown_default: str | None = None,
    secret: bool = False,
    value: Any = _FROM_DEFAULT,
    shown: bool = True,
) -> Any:
    """A dataclass field read from `env`; see the module docstring. A secret is never echoed in an error message;
    `shown=False` keeps the value out of the dataclass's repr."""
    spec = Setting(env, parse, default, doc, shown_default, secret)
    metadata = {_SETTING: spec}
    if value is REQUIRED:
        return field(repr=shown, metadata=metadata)
    if value is not _FROM_DEFAULT or default is None:
        return field(default=None if value is _FROM_DEFAULT else value, repr=shown, metadata=metadata)
    text: str = default
    return field(default_factory=lambda: parse(text), repr=shown, metadata=metadata)


def code_only(value: Any, why: str) -> Any:
    """A dataclass field that is deliberately not read from the environment (set by tests or tools in code)."""
    return field(default=value, metadata={_CODE_ONLY: why})


def group(reader: Callable[[Mapping[str, str]], Any], *, value: Any) -> Any:
    """A dataclass field holding a group of settings, read by `reader` (the group's own `from_env`)."""
    if callable(value):
        return field(default_factory=value, metadata={_GROUP: reader})
    return field(default=value, metadata={_GROUP: reader})


def read_fields(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Every declared field of `cls` read from `env`, groups included, in declaration order."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if _SETTING in f.metadata:
            values[f.name] = f.metadata[_SETTING].read(env)
        elif _GROUP in f.metadata:
            values[f.name] = f.metadata[_GROUP](env)
    return values


def declared(cls: type) -> Iterator[tuple[Field[Any], Setting | None]]:
    """Every field of `cls` and its groups (depth first, in declaration order) with its declaration (None for a
    field declared neither as a setting, nor as a group, nor as `code_only`, which tests refuse)."""
    for f in fields(cls):
        if _SETTING in f.metadata:
            yield f, f.metadata[_SETTING]
        elif _GROUP in f.metadata:
            yield from declared(_group_class(f))
        elif _CODE_ONLY not in f.metadata:
            yield f, None


def all_settings() -> list[Setting]:
    """Every setting, in the order of the settings table."""
    return [spec for _, spec in declared(Settings) if spec is not None]


def _group_class(f: Field[Any]) -> type:
    cls = getattr(f.metadata[_GROUP], "__self__", None)
    if not isinstance(cls, type):
        raise TypeError(f"group field {f.name}: its reader must be the group class's from_env")
    return cls


def _spec(cls: type, name: str) -> Setting:
    found: Setting = next(f.metadata[_SETTING] for f in fields(cls) if f.name == name)
    return found


# ---------------------------------------------------------------------------------------------- parsers
# Each raises ValueError with what a good value looks like, never a conversion's own message
# ("invalid literal for int()", "[<class 'decimal.ConversionSyntax'>]").


def _whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("is not a whole number") from None


def _number(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError("is not a number") from None
    if not value.is_finite():
        raise ValueError("is not a number")
    return value


def whole_number(low: int, high: int) -> Parser[int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return Parser(parse, f"{low} to {high}")


def _text(raw: str) -> str:
    return raw


def _jwt_secret(raw: str) -> str:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes for HS256; leave it unset to have one generated")
    return raw


def _fraction_parse(raw: str) -> Decimal:
    problem = "must be a fraction of the monthly limit above 0 and at most 10 (0.8 means 80%)"
    try:
        value = _number(raw)
    except ValueError:
        raise ValueError(problem) from None
    if value <= 0 or value > 10:
        raise ValueError(problem)
    return value


_fraction = Parser(_fraction_parse, "above 0, at most 10")


def _quantile_parse(raw: str) -> Decimal:
    problem = "must be a quantile from 0.5 (the median) to 1 (the worst case, max_tokens), e.g. 0.95"
    try:
        value = _number(raw)
    except ValueError:
        raise ValueError(problem) from None
    if not Decimal("0.5") <= value <= 1:
        raise ValueError(problem)
    return value


_quantile = Parser(_quantile_parse, "0.5 to 1")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool_parse(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


_bool = Parser(_bool_parse, "`true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`)")


def _or_auto(parse: Callable[[str], T], problem: str) -> Callable[[str], T | None]:
    """`auto` (None: decided at run time) or what `parse` reads; anything else is `problem`."""

    def parse_or_auto(raw: str) -> T | None:
        if raw.lower() == "auto":
            return None
        try:
            return parse(raw)
        except ValueError:
            raise ValueError(problem) from None

    return parse_or_auto


_auto_bool = Parser(_or_auto(_bool_parse, "must be auto, true or false"), "`auto`, `true`, `false`")


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an http(s) origin")
    return origins


def _usd_or_zero_parse(raw: str) -> Decimal:
    problem = "must be an amount in USD from 0 (off) to 1000000000"
    try:
        value = _number(raw)
    except ValueError:
        raise ValueError(problem) from None
    if value < 0 or value > 1_000_000_000:
        raise ValueError(problem)
    return value


_usd_or_zero = Parser(_usd_or_zero_parse, "0 to 1000000000")


_usd_or_auto = Parser(
    _or_auto(_usd_or_zero_parse, "must be auto or an amount in USD from 0 (none) to 1000000000"),
    "auto, or 0 to 1000000000",
)


def _one_of(*choices: str) -> Parser[str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw.lower()

    return Parser(parse, ", ".join(f"`{c}`" for c in choices))


def _rates_parse(raw: str) -> str:
    """Rate limits in the `limits` library's notation: `10/minute`, several separated by `;` (`10/minute;50/hour`)."""
    problem = "must be rate limits such as 10/minute or 10/minute;50/hour (counts from 1 to 1000000)"
    try:
        items = parse_many(raw)
    except ValueError:
        raise ValueError(problem) from None
    if not items or any(not 1 <= item.amount <= 1_000_000 or item.get_expiry() > 86_400 for item in items):
        raise ValueError(problem + ", windows of at most a day")
    return raw


_rates = Parser(_rates_parse, "`N/second`, `N/minute`, `N/hour` or `N/day`, several joined by `;`")


def _failure_mode_parse(raw: str) -> str:
    if raw.lower() not in {"open", "closed"}:
        raise ValueError("must be open (allow when the database is unavailable) or closed (block)")
    return raw.lower()


_failure_mode = Parser(_failure_mode_parse, "`open`, `closed`")


def _reservation_margin_parse(raw: str) -> str:
    if raw.lower() not in {"pooled", "per_request"}:
        raise ValueError(
            "must be pooled (each request holds its mean, each budget a margin for the sum in flight) or "
            "per_request (each request holds its own quantile)"
        )
    return raw.lower()


_reservation_margin = Parser(_reservation_margin_parse, "`pooled`, `per_request`")


def _seconds_parse(raw: str) -> float:
    problem = "must be a number of seconds from 0.1 to 3600"
    try:
        value = float(_number(raw))
    except ValueError:
        raise ValueError(problem) from None
    if not 0.1 <= value <= 3600:
        raise ValueError(problem)
    return value


_seconds = Parser(_seconds_parse, "0.1 to 3600")


def _optional_source(raw: str) -> str | None:
    if raw.lower() in {"off", "none", "false"}:
        return None
    if raw.startswith(("http://", "https://", "file://", "/", "./", "../")) or raw.endswith(".json"):
        return raw
    raise ValueError("must be an http(s) URL, a file:// URL or a path to a JSON file, or off")


def _existing_file(raw: str) -> str:
    if not os.path.isfile(raw):
        raise ValueError("no such file")
    return raw


def _self_hosted(raw: str) -> tuple[tuple[str, Decimal, Decimal], ...]:
    models = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, _, prices = item.partition("=")
        cost_in, cost_out = Decimal(0), Decimal(0)
        if prices:
            first, slash, second = prices.partition("/")
            if not slash:
                raise ValueError(f"{item!r}: give prices per million tokens as input/output, e.g. {name}=0.2/0.6")
            try:
                cost_in, cost_out = _number(first.strip()), _number(second.strip())
            except ValueError:
                raise ValueError(f"{item!r}: prices must be non-negative numbers") from None
            if cost_in < 0 or cost_out < 0:
                raise ValueError(f"{item!r}: prices must be non-negative numbers")
        models.append((name.strip(), cost_in, cost_out))
    return tuple(models)


def _http_url_parse(raw: str) -> str:
    # Private destinations are judged in Settings.from_env, which knows SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS.
    return outbound.check_url(raw, allow_private=True)


_http_url = Parser(_http_url_parse, "an `http(s)` URL without user name, password or whitespace")


def _unpriced_price(raw: str) -> tuple[Decimal, Decimal] | None:
    if raw.lower() == "auto":
        return None
    low, slash, high = raw.partition("/")
    try:
        prices = (Decimal(low.strip()), Decimal(high.strip()))
    except InvalidOperation:
        prices = None
    if not slash or prices is None or not all(p.is_finite() and 0 <= p <= 100_000 for p in prices):
        raise ValueError("must be auto or INPUT/OUTPUT USD per million tokens, e.g. 15/75")
    return prices


def _time_zone(raw: str) -> str:
    name = raw.strip()
    try:
        periods.zone(name)  # the names every time zone field takes (not posixrules, posix/..., right/...)
    except InvalidInput:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, America/Los_Angeles)") from None
    return name


def _cron_parse(raw: str) -> str:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(raw, datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"is not a five-field cron expression (UTC): {exc}") from None
    return raw


_cron = Parser(_cron_parse, "five-field cron, UTC")


def _minutes_dividing_an_hour_parse(raw: str) -> int:
    problem = "must be a number of minutes that divides 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)"
    try:
        value = _whole(raw)
    except ValueError:
        raise ValueError(problem) from None
    if value < 1 or 60 % value:
        raise ValueError(problem)
    return value


_minutes_dividing_an_hour = Parser(_minutes_dividing_an_hour_parse, "1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60")


def _mailbox(raw: str) -> str:
    """An address, optionally with a display name: `alerts@example.com` or `Spendplane <alerts@example.com>`."""
    _name, address = parseaddr(raw)
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not an email address ({exc})") from exc
    return raw


#: SAP user settings decide the date format an upload expects; these are the common ones.
SAP_DATE_FORMATS = {"DD.MM.YYYY": "%d.%m.%Y", "MM/DD/YYYY": "%m/%d/%Y", "YYYY-MM-DD": "%Y-%m-%d", "YYYYMMDD": "%Y%m%d"}


def _sap_date_format_parse(raw: str) -> str:
    if raw.upper() not in SAP_DATE_FORMATS:
        raise ValueError(f"must be one of {', '.join(SAP_DATE_FORMATS)}")
    return raw.upper()


_sap_date_format = Parser(_sap_date_format_parse, ", ".join(f"`{f}`" for f in SAP_DATE_FORMATS))


def _sap_code(length: int) -> Parser[str]:
    def parse(raw: str) -> str:
        if len(raw) > length or not raw.isalnum():
            raise ValueError(f"must be 1 to {length} letters or digits (kept as text, leading zeros included)")
        return raw.upper()

    return Parser(parse, f"1 to {length} letters or digits")


# ---------------------------------------------------------------------------------------------- groups


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (required, never skipped); port 587
    SSL = "ssl"  # TLS from the first byte ("SMTPS"); port 465
    NONE = "none"  # no encryption: a relay on localhost or a private network only; port 25


def _smtp_security_parse(raw: str) -> SmtpSecurity:
    try:
        return SmtpSecurity(raw.lower())
    except ValueError:
        raise ValueError(f"must be one of {', '.join(SmtpSecurity)}") from None


_smtp_security = Parser(_smtp_security_parse, ", ".join(f"`{s}`" for s in SmtpSecurity))
_SMTP_DEFAULT_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.SSL: 465, SmtpSecurity.NONE: 25}


@dataclass(frozen=True)
class SmtpSettings:
    """Where alert emails go out; read only when SMTP_HOST is set (else email deliveries are `unsendable`)."""

    host: str = setting(
        "SMTP_HOST",
        _text,
        None,
        "mail server for alert emails. Unset: email alerts are off (logged at start; their deliveries are marked "
        "`unsendable`)",
        value=REQUIRED,
    )
    sender: str = setting(
        "SMTP_FROM",
        _mailbox,
        None,
        "sender of alert emails: `alerts@example.com` or `Spendplane <alerts@example.com>`",
        shown_default="required with `SMTP_HOST`",
        value=REQUIRED,
    )
    port: int = setting(
        "SMTP_PORT",
        whole_number(1, 65535),
        None,
        "`587` for `starttls`, `465` for `ssl`, `25` for `none`",
        shown_default="by `SMTP_TLS`",
        value=587,
    )
    username: str | None = setting("SMTP_USERNAME", _text, None, "SMTP login; set both or neither of these two")
    password: str | None = setting(
        "SMTP_PASSWORD", _text, None, "SMTP password, with `SMTP_USERNAME`", secret=True, shown=False
    )
    security: SmtpSecurity = setting(
        "SMTP_TLS",
        _smtp_security,
        "starttls",
        "`starttls` (required, never skipped), `ssl` (TLS from the first byte), `none` (a relay on a private "
        "network only)",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings | None:
        if _spec(cls, "host").read(env) is None:
            return None
        values = read_fields(cls, env)
        if values["password"] is not None and values["username"] is None:
            raise ConfigError("SMTP_USERNAME", "must be set when SMTP_PASSWORD is")
        if values["username"] is not None and values["password"] is None:
            raise ConfigError("SMTP_PASSWORD", "must be set when SMTP_USERNAME is")
        if values["sender"] is None:
            raise ConfigError("SMTP_FROM", "must be set when SMTP_HOST is: the sender of alert emails")
        if values["port"] is None:
            values["port"] = _SMTP_DEFAULT_PORTS[values["security"]]
        return cls(**values)


@dataclass(frozen=True)
class AlertDeliverySettings:
    """Retries of alert emails and webhook posts: attempt n failing waits backoff * 2^(n-1) (at most an hour)."""

    max_attempts: int = setting(
        "ALERT_DELIVERY_MAX_ATTEMPTS",
        whole_number(1, 100),
        "10",
        "attempts per email or webhook post before it is given up (`failed`, logged as an error)",
    )
    backoff_seconds: int = setting(
        "ALERT_DELIVERY_BACKOFF_SECONDS",
        whole_number(1, 3600),
        "30",
        "wait after the first failed attempt; it doubles after each further one, at most an hour",
    )
    timeout_seconds: int = setting(
        "ALERT_DELIVERY_TIMEOUT_SECONDS",
        whole_number(1, 300),
        "10",
        "bound on connecting and on each answer, for SMTP and for the webhook",
    )
    sweep_seconds: int = setting(
        "ALERT_DELIVERY_SWEEP_SECONDS",
        whole_number(1, 3600),
        "30",
        "how often each replica looks for due deliveries besides being woken by new alerts",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertDeliverySettings:
        return cls(**read_fields(cls, env))


@dataclass(frozen=True)
class SapSettings:
    """Defaults for the SAP chargeback exports; an allocation rule's metadata overrides them per line."""

    company_code: str = setting(
        "SPENDPLANE_SAP_COMPANY_CODE",
        _sap_code(4),
        "1000",
        "SAP company code (BUKRS) when a rule has no `company_code`",
    )
    controlling_area: str = setting(
        "SPENDPLANE_SAP_CONTROLLING_AREA",
        _sap_code(4),
        "1000",
        "controlling area (KOKRS) for CO reposting when a rule has no `controlling_area`",
    )
    gl_account: str = setting(
        "SPENDPLANE_SAP_GL_ACCOUNT",
        _sap_code(10),
        "0000620000",
        "G/L account (HKONT), the AI-services expense account, when a rule has no `gl_account`",
    )
    cost_element: str = setting(
        "SPENDPLANE_SAP_COST_ELEMENT",
        _sap_code(10),
        "0000620000",
        "cost element (KSTAR) for CO reposting when a rule has no `cost_element`",
    )
    sender_cost_center: str = setting(
        "SPENDPLANE_SAP_SENDER_COST_CENTER",
        _sap_code(10),
        "0000100000",
        "the central AI/IT cost center that pays the provider bills: credited in FI, the sender in CO",
    )
    document_type: str = setting("SPENDPLANE_SAP_DOCUMENT_TYPE", _sap_code(2), "SA", "FI document type (BLART)")
    date_format: str = setting(
        "SPENDPLANE_SAP_DATE_FORMAT",
        _sap_date_format,
        "DD.MM.YYYY",
        "dates in SAP files, as your SAP user settings expect",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SapSettings:
        return cls(**read_fields(cls, env))


@dataclass(frozen=True)
class SlaSettings:
    """The health collector runs every `collector_interval_minutes` (a divisor of 60, so its ticks fall on the same
    minutes every hour) over the last `health_window_minutes`; a violation resolves itself after
    `healthy_windows_to_resolve` healthy runs in a row; snapshots are kept `health_retention_days`. A metric is
    judged only on at least `min_requests` requests (a handful of calls says little about a provider)."""

    collector_interval_minutes: int = setting(
        "SLA_COLLECTOR_INTERVAL_MINUTES",
        _minutes_dividing_an_hour,
        "5",
        "how often the provider-health collector runs, in minutes; it also runs once at start-up",
    )
    health_window_minutes: int = setting(
        "SLA_HEALTH_WINDOW_MINUTES",
        whole_number(1, 1440),
        "60",
        "the window of `providerHealth`, in minutes (at least `SLA_COLLECTOR_INTERVAL_MINUTES`)",
    )
    healthy_windows_to_resolve: int = setting(
        "SLA_HEALTHY_WINDOWS_TO_RESOLVE",
        whole_number(1, 1000),
        "3",
        "healthy collector runs in a row that resolve a violation",
    )
    health_retention_days: int = setting(
        "SLA_HEALTH_RETENTION_DAYS",
        whole_number(1, 3650),
        "30",
        "how long health snapshots (the history) are kept, in days",
    )
    min_requests: int = setting(
        "SLA_MIN_REQUESTS",
        whole_number(1, 1_000_000),
        "20",
        "fewest requests behind a figure before an SLA target or a failover trigger is judged on it",
    )

    @property
    def collector_cron(self) -> str:
        if self.collector_interval_minutes == 60:
            return "0 * * * *"
        return f"*/{self.collector_interval_minutes} * * * *"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlaSettings:
        values = read_fields(cls, env)
        window, interval = values["health_window_minutes"], values["collector_interval_minutes"]
        if window < interval:
            raise ConfigError(
                "SLA_HEALTH_WINDOW_MINUTES", f"{window} is shorter than SLA_COLLECTOR_INTERVAL_MINUTES {interval}"
            )
        return cls(**values)


# ---------------------------------------------------------------------------------------------- spend anomalies


def _anomaly_threshold_parse(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 2.0 <= value <= 100.0:
        raise ValueError("must be a robust z-score from 2 to 100")
    return value


_anomaly_threshold = Parser(_anomaly_threshold_parse, "2 to 100")


def _mailboxes_parse(raw: str) -> tuple[str, ...]:
    return tuple(_mailbox(part.strip()) for part in raw.split(",") if part.strip())


_mailboxes = Parser(_mailboxes_parse, "comma-separated email addresses")


# ---------------------------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class Settings:
    database_url: URL = setting(
        "DATABASE_URL",
        normalize_database_url,
        DEFAULT_DATABASE_URL,
        "`sqlite:///path` (embedded) or LiteLLM's own `postgresql://user:pw@host:5432/litellm` as written (Prisma "
        "options such as `schema=` are dropped, `sslmode` is honoured)",
        secret=True,
    )
    litellm_master_key: str | None = setting(
        "LITELLM_MASTER_KEY",
        _text,
        None,
        "logging in with it gives the admin role. Unset: the first start generates an admin key, stores its sha256 "
        "and prints it once",
        secret=True,
    )
    jwt_secret: str | None = setting(
        "SPENDPLANE_JWT_SECRET",
        _jwt_secret,
        None,
        "HS256 signing key, at least 32 bytes. Unset: generated at first start and kept in the database, so every "
        "replica agrees",
        shown_default="generated",
        secret=True,
    )
    jwt_ttl_seconds: int = setting(
        "SPENDPLANE_JWT_TTL_SECONDS", whole_number(60, 30 * 86400), "3600", "login token lifetime, in seconds"
    )
    soft_limit_threshold: Decimal = setting(
        "SOFT_LIMIT_THRESHOLD",
        _fraction,
        "0.8",
        "default soft limit of new budgets: the fraction of the monthly limit that warns",
    )
    hard_limit_threshold: Decimal = setting(
        "HARD_LIMIT_THRESHOLD",
        _fraction,
        "1.0",
        "default hard limit of new budgets: the fraction that blocks; not below `SOFT_LIMIT_THRESHOLD`",
    )
    host: str = setting("SPENDPLANE_HOST", _text, "127.0.0.1", "listen address (`0.0.0.0` in a container)")
    port: int = setting("SPENDPLANE_PORT", whole_number(1, 65535), "8086", "listen port")
    #: The guide's separate services as extra listeners of the same process (same state, no second engine).
    predictor_port: int | None = setting(
        "SPENDPLANE_PREDICTOR_PORT",
        whole_number(1, 65535),
        None,
        "also serve the guide's cost predictor (`/predict`, `/budget/check`, `/pricing`, `/health`) on this port "
        "(the guide's 8080), in the same process; unset: off unless `COST_PREDICTOR_URL` names a port",
    )
    webhook_port: int | None = setting(
        "SPENDPLANE_WEBHOOK_PORT",
        whole_number(1, 65535),
        None,
        "also serve the guide's budget webhook (`/webhook/pre-request`, `/alerts`, `/health`) on this port (the "
        "guide's 8081), in the same process; unset: off",
    )
    #: The guide's COST_PREDICTOR_URL. One process predicts in memory, so nothing calls it over HTTP; its port is
    #: where the predictor listener opens when SPENDPLANE_PREDICTOR_PORT is unset.
    cost_predictor_url: str | None = setting(
        "COST_PREDICTOR_URL",
        _http_url,
        None,
        "the guide's predictor address. The webhook predicts in process and never calls it; when "
        "`SPENDPLANE_PREDICTOR_PORT` is unset, the predictor listener opens on this URL's port",
    )
    #: The guide's pre-configured global budget, created once at the first start (0: none).
    #: None ("auto"): LiteLLM's max_budget, else 1500. Settings built in code (tests, tools) create none.
    global_budget_usd: Decimal | None = setting(
        "GLOBAL_BUDGET_USD",
        _usd_or_auto,
        "auto",
        "the global monthly budget (its hard limit, USD) created once at the first start; `0` for none. `auto`: "
        "LiteLLM's `litellm_settings.max_budget` from `LITELLM_CONFIG_PATH`, else 1500",
        value=Decimal(0),
    )
    global_soft_budget_usd: Decimal = setting(
        "GLOBAL_SOFT_BUDGET_USD",
        _usd_or_zero,
        "1000",
        "the soft limit (USD, warns) of that first global budget; not above `GLOBAL_BUDGET_USD`",
    )
    graphiql: bool = setting(
        "SPENDPLANE_GRAPHIQL", _bool, "true", "serve GraphiQL on `GET /graphql`; `false` in production"
    )
    #: Create LiteLLM-compatible tables in our migrations (None = only on SQLite).
    embedded: bool | None = setting(
        "SPENDPLANE_EMBEDDED",
        _auto_bool,
        "auto",
        "create LiteLLM-compatible tables (`LiteLLM_SpendLogs`, keys, teams, users) in our migrations: `auto` = only "
        "on SQLite. Never set it on LiteLLM's production database",
    )
    allowed_origins: tuple[str, ...] = setting(
        "SPENDPLANE_ALLOWED_ORIGINS",
        _origins,
        "",
        "comma-separated dashboard origins (`https://dash.example.com`) for CORS and for browser WebSockets from "
        "another origin",
    )
    max_query_depth: int = setting(
        "SPENDPLANE_MAX_QUERY_DEPTH", whole_number(2, 100), "12", "GraphQL query depth limit"
    )
    max_query_tokens: int = setting(
        "SPENDPLANE_MAX_QUERY_TOKENS", whole_number(50, 100_000), "2000", "GraphQL parser token limit"
    )
    max_query_aliases: int = setting(
        "SPENDPLANE_MAX_QUERY_ALIASES", whole_number(1, 1000), "20", "GraphQL alias limit per query"
    )
    max_introspection_depth: int = setting(
        "SPENDPLANE_MAX_INTROSPECTION_DEPTH",
        whole_number(2, 100),
        "15",
        "GraphQL depth limit for introspection (`__schema`, `__type`); the standard introspection query GraphiQL "
        "sends needs 14",
    )
    max_response_bytes: int = setting(
        "SPENDPLANE_MAX_RESPONSE_BYTES",
        whole_number(65_536, 1_073_741_824),
        "8388608",
        "most bytes one GraphQL operation may answer (inline exports count as they are read); past it the "
        "operation fails with `RESPONSE_TOO_LARGE`",
    )
    #: Live subscriptions one WebSocket connection, and one token holder across connections, may have open.
    max_subscriptions_per_connection: int = setting(
        "SPENDPLANE_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        whole_number(1, 1000),
        "25",
        "live GraphQL subscriptions one WebSocket connection may have open",
    )
    max_subscriptions_per_principal: int = setting(
        "SPENDPLANE_MAX_SUBSCRIPTIONS_PER_PRINCIPAL",
        whole_number(1, 10_000),
        "50",
        "live GraphQL subscriptions one token holder may have open across its connections",
    )
    log_level: str = setting(
        "SPENDPLANE_LOG_LEVEL",
        _one_of("critical", "error", "warning", "info", "debug"),
        "info",
        "how much the service logs",
    )
    #: The guide's ALERT_WEBHOOK_URL: every alert is POSTed there (LiteLLM webhook-event fields).
    alert_webhook_url: str | None = setting(
        "ALERT_WEBHOOK_URL",
        _http_url,
        None,
        "every alert is POSTed there as JSON (see [Alerts](alerts.md#webhook)); a private, loopback or "
        "link-local host only with `SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS`",
        secret=True,
    )
    allow_private_webhooks: bool = setting(
        "SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS",
        _bool,
        "false",
        "let alert webhooks (`ALERT_WEBHOOK_URL`, SLA definitions) go to private, loopback and link-local "
        "addresses; checked when the URL is given and again, resolved, when it is sent",
    )
    #: Where alert emails go out (None: SMTP_HOST unset, email deliveries are marked unsendable).
    smtp: SmtpSettings | None = group(SmtpSettings.from_env, value=None)
    alert_delivery: AlertDeliverySettings = group(AlertDeliverySettings.from_env, value=AlertDeliverySettings)
    #: Schedule the periodic jobs (rollups, forecasts, price refresh, ...) and run alert delivery. Off only for tests
    #: and one-off tools.
    jobs_enabled: bool = setting(
        "SPENDPLANE_JOBS",
        _bool,
        "true",
        "run the periodic jobs and alert delivery; `false` only for one-off tools and tests",
    )
    #: Refuse to serve an embedded (SQLite) database another process serves. Off only in tests that run two
    #: app instances on one SQLite file in one process on purpose.
    embedded_lock: bool = code_only(True, "tests that run two app instances on one SQLite file on purpose")
    #: Shared secret LiteLLM sends as x-api-key to the webhook, the Guardrail API and spend ingestion.
    webhook_key: str | None = setting(
        "SPENDPLANE_WEBHOOK_KEY",
        _text,
        None,
        "shared secret LiteLLM sends as `x-api-key` to the webhook, the Guardrail API and `/spend/litellm`. Unset: "
        "LiteLLM's master key (or the generated admin key) is accepted instead",
        secret=True,
    )
    #: Throttling of the doors that test a key without a token (POST /auth/login, /budget/check, /predict's
    #: X-Api-Key): webhook/throttle.py, with the `limits` library.
    throttle_failures_per_address: str = setting(
        "SPENDPLANE_THROTTLE_FAILURES_PER_ADDRESS",
        _rates,
        "10/minute;50/hour",
        "wrong keys one client address (IPv6: its /64) may send to `/auth/login`, `/budget/check` and `/predict` "
        "before it is refused with 429 and `Retry-After` (successful logins do not count); counted apart, the same "
        "rate for the gateway's routes (refused with 401)",
    )
    throttle_failures_per_key_prefix: str = setting(
        "SPENDPLANE_THROTTLE_FAILURES_PER_KEY_PREFIX",
        _rates,
        "20/minute;100/hour",
        "wrong keys sharing their first 12 characters that may be tried, from any address, before that prefix is "
        "refused with 429",
    )
    throttle_requests_per_address: str = setting(
        "SPENDPLANE_THROTTLE_REQUESTS_PER_ADDRESS",
        _rates,
        "600/minute",
        "calls one client address may make to `/budget/check` and `/predict`, right keys included",
    )
    throttle_max_backoff_seconds: int = setting(
        "SPENDPLANE_THROTTLE_MAX_BACKOFF_SECONDS",
        whole_number(1, 86_400),
        "900",
        "the longest wait a refused client is given: each time it runs out of wrong keys again the wait doubles, "
        "up to this",
    )
    #: The guide's per-key default budget for keys without their own (USD per month; 0 turns it off).
    default_key_budget: Decimal = setting(
        "DEFAULT_KEY_BUDGET_USD",
        _usd_or_zero,
        "100",
        "the guide's per-key default monthly budget (USD) for keys without one of their own; `0` turns it off",
    )
    #: What the pre-request check answers when the database is slow or down: "open" (allow) or "closed".
    enforcement_failure_mode: str = setting(
        "ENFORCEMENT_FAILURE_MODE",
        _failure_mode,
        "open",
        "when the database does not answer within `ENFORCEMENT_TIMEOUT_MS`: `open` allows, `closed` blocks",
    )
    enforcement_timeout_ms: int = setting(
        "ENFORCEMENT_TIMEOUT_MS", whole_number(10, 60_000), "1000", "bound on every pre-request decision, in ms"
    )
    #: An admitted request's hold on budget is released when its spend arrives, or after this long.
    reservation_ttl_seconds: int = setting(
        "RESERVATION_TTL_SECONDS",
        whole_number(10, 86_400),
        "900",
        "an admitted request's hold on budget is released when its spend arrives, or after this many seconds",
    )
    #: Which quantile of the predicted cost holds cover (learned output lengths per model): of the sum in flight
    #: on each budget (RESERVATION_MARGIN=pooled) or of each request's own cost (per_request).
    reservation_quantile: Decimal = setting(
        "RESERVATION_QUANTILE",
        _quantile,
        "0.75",
        "which quantile of the predicted cost holds cover, from the models' learned output lengths: with "
        "`RESERVATION_MARGIN=pooled` of the sum in flight on each budget, with `per_request` of each request's "
        "cost; `0.5` the mean (pooled) or median (per request), `1` the worst case (`max_tokens`); chosen by "
        "`bench/reservations.py`",
    )
    #: How the quantile is held: per budget over the requests in flight (pooled) or by each request alone.
    reservation_margin: str = setting(
        "RESERVATION_MARGIN",
        _reservation_margin,
        "per_request",
        "`pooled`: each request holds its mean predicted cost and each budget a margin so that the sum in flight "
        "stays within `RESERVATION_QUANTILE` (z x the square root of the requests' summed variance); "
        "`per_request`: each request holds its own quantile",
    )
    #: What a request for a model with no known price holds: None (the default, "auto") the dearest price of a
    #: known model of its provider, else of any model; or a fixed (input, output) price per million tokens.
    unpriced_model_price: tuple[Decimal, Decimal] | None = setting(
        "UNPRICED_MODEL_PRICE",
        _unpriced_price,
        "auto",
        "what a request for a model with no known price holds: `auto` = the dearest known price of its provider, "
        "else of any model; or a fixed `INPUT/OUTPUT` USD per million tokens, e.g. `15/75`",
    )
    #: How often each instance re-reads recorded spend for its in-memory budget states.
    spend_refresh_seconds: float = setting(
        "SPEND_REFRESH_SECONDS",
        _seconds,
        "2",
        "how often each instance re-reads recorded spend and settles reservations, in seconds",
    )
    #: LiteLLM's published price map (URL, file path or file:// URL); None: baseline prices only. Settings built in
    #: code (tests, tools) default to None, so they never fetch.
    price_map_url: str | None = setting(
        "LITELLM_PRICE_MAP_URL",
        _optional_source,
        LITELLM_PRICE_MAP_URL,
        "LiteLLM's model price map: an `http(s)` URL, a `file://` URL or a path; `off` keeps the offline baseline only",
        value=None,
    )
    price_map_cache: str = setting(
        "LITELLM_PRICE_MAP_CACHE",
        _text,
        "./spendplane-price-map.json",
        "where the fetched price map is cached (read at start when the network is down)",
    )
    #: LiteLLM's config.yaml, for model aliases (model_list) and per-deployment prices.
    litellm_config_path: str | None = setting(
        "LITELLM_CONFIG_PATH",
        _existing_file,
        None,
        "LiteLLM's `config.yaml`: model aliases (`model_list`, `model_group_alias`) and per-deployment prices",
    )
    #: Self-hosted models and their prices per million tokens, e.g. "llama-3.1-70b, ollama/*, mymodel=0.2/0.6".
    #: The guide's local models are free out of the box; deployments on a private `api_base` in LiteLLM's
    #: config.yaml are free too (resolvers/pricing/__init__.py).
    self_hosted_models: tuple[tuple[str, Decimal, Decimal], ...] = setting(
        "SELF_HOSTED_MODELS",
        _self_hosted,
        "llama-3.1-70b, ollama/*, ollama_chat/*, hosted_vllm/*",
        "self-hosted models and their price per million tokens: `llama-3.1-70b, ollama/*, mymodel=0.2/0.6` (glob "
        "patterns matched against the name as asked; no price = free). Set it to replace the defaults",
    )
    #: Longest range a cost report, trend or export may cover, in days.
    report_max_days: int = setting(
        "SPENDPLANE_REPORT_MAX_DAYS",
        whole_number(7, 3660),
        "366",
        "longest custom report, trend or export range, in days",
    )
    #: The organisation's IANA time zone: the default of new budgets' windows (and of reports).
    time_zone: str = setting(
        "SPENDPLANE_TIME_ZONE",
        _time_zone,
        "UTC",
        "the organisation's IANA time zone (`Europe/Berlin`): the default of new budgets' windows, and of reports, "
        "trends, the dashboard summary, exports and chargeback months that name no `time_zone`; the rollup keeps a "
        "daily summary of its local days (changing it refills that on the next rollup run)",
    )
    #: Closed days this far back are re-counted on each rollup run, so late spend logs are rolled up.
    rollup_recheck_days: int = setting(
        "SPENDPLANE_ROLLUP_RECHECK_DAYS",
        whole_number(1, 3660),
        "62",
        "closed days re-counted on each rollup run, so late spend logs are rolled up (62 covers this and last month)",
    )
    rollup_schedule: str = setting(
        "SPENDPLANE_ROLLUP_SCHEDULE", _cron, "*/10 * * * *", "when the daily rollup is brought up to date"
    )
    forecast_schedule: str = setting(
        "SPENDPLANE_FORECAST_SCHEDULE", _cron, "30 2 * * *", "when forecasts are generated"
    )
    #: Diagnostics and benchmarks: answer reports from the raw logs only, never the rollup.
    reports_from_raw: bool = setting(
        "SPENDPLANE_REPORTS_FROM_RAW",
        _bool,
        "false",
        "answer reports from the raw logs only, never the rollup (diagnostics, benchmarks)",
    )
    sap: SapSettings = group(SapSettings.from_env, value=SapSettings)
    #: SLA monitoring: the health collector, auto-resolution of violations, snapshot retention.
    sla: SlaSettings = group(SlaSettings.from_env, value=SlaSettings)
    # Spend anomalies (resolvers/anomalies): when the scan runs, how unusual (robust z) and how large (USD of
    # excess) spend must be to count, and who gets the alerts besides the scope's budget alert emails.
    anomaly_schedule: str = setting(
        "SPENDPLANE_ANOMALY_SCHEDULE",
        _cron,
        "5 * * * *",
        "when the spend-anomaly scan runs (the last closed hour and day)",
    )
    anomaly_threshold: float = setting(
        "SPENDPLANE_ANOMALY_THRESHOLD",
        _anomaly_threshold,
        "5",
        "robust z-score at or above which spend, and its request count or cost per request, is unusual",
    )
    anomaly_min_usd: Decimal = setting(
        "SPENDPLANE_ANOMALY_MIN_USD",
        _usd_or_zero,
        "1",
        "smallest excess over the expected spend, USD, that is an anomaly",
    )
    anomaly_alert_emails: tuple[str, ...] = setting(
        "SPENDPLANE_ANOMALY_ALERT_EMAILS", _mailboxes, "", "addresses every spend-anomaly alert is emailed to"
    )

    @property
    def embedded_mode(self) -> bool:
        if self.embedded is not None:
            return self.embedded
        return self.database_url.get_backend_name() == "sqlite"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls(**read_fields(cls, env))
        if settings.soft_limit_threshold > settings.hard_limit_threshold:
            raise ConfigError(
                "SOFT_LIMIT_THRESHOLD",
                f"{settings.soft_limit_threshold} is above HARD_LIMIT_THRESHOLD {settings.hard_limit_threshold}",
            )
        if settings.alert_webhook_url is not None:
            try:
                outbound.check_url(settings.alert_webhook_url, allow_private=settings.allow_private_webhooks)
            except outbound.OutboundRefused as exc:
                raise ConfigError("ALERT_WEBHOOK_URL", str(exc)) from None
        if settings.global_budget_usd and settings.global_soft_budget_usd > settings.global_budget_usd:
            raise ConfigError(
                "GLOBAL_SOFT_BUDGET_USD",
                f"{settings.global_soft_budget_usd} is above GLOBAL_BUDGET_USD {settings.global_budget_usd}",
            )
        return settings

    @property
    def predictor_listen_port(self) -> int | None:
        """SPENDPLANE_PREDICTOR_PORT, else the port COST_PREDICTOR_URL names (None: no predictor listener)."""
        if self.predictor_port is not None:
            return self.predictor_port
        if self.cost_predictor_url is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(self.cost_predictor_url)
        return parts.port or (443 if parts.scheme == "https" else 80)
