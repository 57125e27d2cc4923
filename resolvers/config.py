"""Service configuration from the environment. Every variable is listed in the README's settings table."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from enum import StrEnum
from typing import TypeVar

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import URL

from models.db import normalize_database_url

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./spendplane.db"
LITELLM_PRICE_MAP_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"


class ConfigError(ValueError):
    """A setting has a value the service cannot start with; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class SapSettings:
    """Defaults for the SAP chargeback exports; an allocation rule's metadata overrides them per line."""

    company_code: str = "1000"  # BUKRS
    controlling_area: str = "1000"  # KOKRS
    gl_account: str = "0000620000"  # HKONT, the AI-services expense account
    cost_element: str = "0000620000"  # KSTAR for CO reposting
    #: The central AI/IT cost center that pays the provider bills: credited (FI) or the sender (CO).
    sender_cost_center: str = "0000100000"
    document_type: str = "SA"  # BLART
    date_format: str = "DD.MM.YYYY"


@dataclass(frozen=True)
class Settings:
    database_url: URL = field(default_factory=lambda: normalize_database_url(DEFAULT_DATABASE_URL))
    litellm_master_key: str | None = None
    jwt_secret: str | None = None
    jwt_ttl_seconds: int = 3600
    soft_limit_threshold: Decimal = Decimal("0.8")
    hard_limit_threshold: Decimal = Decimal("1.0")
    host: str = "127.0.0.1"
    port: int = 8086
    graphiql: bool = True
    #: Create LiteLLM-compatible tables in our migrations (None = only on SQLite).
    embedded: bool | None = None
    allowed_origins: tuple[str, ...] = ()
    max_query_depth: int = 12
    max_query_tokens: int = 2000
    max_query_aliases: int = 20
    #: Live subscriptions one WebSocket connection, and one token holder across connections, may have open.
    max_subscriptions_per_connection: int = 25
    max_subscriptions_per_principal: int = 50
    log_level: str = "info"
    #: The guide's ALERT_WEBHOOK_URL: every alert is POSTed there (LiteLLM webhook-event fields).
    alert_webhook_url: str | None = None
    #: Where alert emails go out (None: SMTP_HOST unset, email deliveries are marked unsendable).
    smtp: SmtpSettings | None = None
    alert_delivery: AlertDeliverySettings = field(default_factory=lambda: AlertDeliverySettings())
    #: Schedule the periodic jobs (rollups, forecasts, price refresh, ...) and run alert delivery. Off only for tests
    #: and one-off tools.
    jobs_enabled: bool = True
    #: Refuse to serve an embedded (SQLite) database another process serves. Off only in tests that run two
    #: app instances on one SQLite file in one process on purpose.
    embedded_lock: bool = True
    #: Shared secret LiteLLM sends as x-api-key to the webhook, the Guardrail API and spend ingestion.
    webhook_key: str | None = None
    #: The guide's per-key default budget for keys without their own (USD per month; 0 turns it off).
    default_key_budget: Decimal = Decimal(100)
    #: What the pre-request check answers when the database is slow or down: "open" (allow) or "closed".
    enforcement_failure_mode: str = "open"
    enforcement_timeout_ms: int = 1000
    #: An admitted request's hold on budget is released when its spend arrives, or after this long.
    reservation_ttl_seconds: int = 900
    #: What a request for a model with no known price holds: None (the default, "auto") the dearest price of a
    #: known model of its provider, else of any model; or a fixed (input, output) price per million tokens.
    unpriced_model_price: tuple[Decimal, Decimal] | None = None
    #: How often each instance re-reads recorded spend for its in-memory budget states.
    spend_refresh_seconds: float = 2.0
    #: LiteLLM's published price map (URL, file path or file:// URL); None: baseline prices only.
    price_map_url: str | None = None
    price_map_cache: str = "./spendplane-price-map.json"
    #: LiteLLM's config.yaml, for model aliases (model_list) and per-deployment prices.
    litellm_config_path: str | None = None
    #: Self-hosted models and their prices per million tokens, e.g. "llama-3.1-70b, ollama/*, mymodel=0.2/0.6".
    self_hosted_models: tuple[tuple[str, Decimal, Decimal], ...] = ()
    #: Longest range a cost report, trend or export may cover, in days.
    report_max_days: int = 366
    #: The organisation's IANA time zone: the default of new budgets' windows (and of reports).
    time_zone: str = "UTC"
    #: Closed days this far back are re-counted on each rollup run, so late spend logs are rolled up.
    rollup_recheck_days: int = 62
    rollup_schedule: str = "*/10 * * * *"
    forecast_schedule: str = "30 2 * * *"
    #: Diagnostics and benchmarks: answer reports from the raw logs only, never the rollup.
    reports_from_raw: bool = False
    sap: SapSettings = field(default_factory=SapSettings)
    #: SLA monitoring: the health collector, auto-resolution of violations, snapshot retention.
    sla: SlaSettings = field(default_factory=lambda: SlaSettings())

    @property
    def embedded_mode(self) -> bool:
        if self.embedded is not None:
            return self.embedded
        return self.database_url.get_backend_name() == "sqlite"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        settings = cls(
            database_url=read("DATABASE_URL", normalize_database_url, DEFAULT_DATABASE_URL),
            litellm_master_key=read.optional("LITELLM_MASTER_KEY", _non_blank),
            jwt_secret=read.optional("SPENDPLANE_JWT_SECRET", _jwt_secret),
            jwt_ttl_seconds=read("SPENDPLANE_JWT_TTL_SECONDS", _int_between(60, 30 * 86400), "3600"),
            soft_limit_threshold=read("SOFT_LIMIT_THRESHOLD", _fraction, "0.8"),
            hard_limit_threshold=read("HARD_LIMIT_THRESHOLD", _fraction, "1.0"),
            host=read("SPENDPLANE_HOST", _non_blank, "127.0.0.1"),
            port=read("SPENDPLANE_PORT", _int_between(1, 65535), "8086"),
            graphiql=read("SPENDPLANE_GRAPHIQL", _bool, "true"),
            embedded=read.optional("SPENDPLANE_EMBEDDED", _auto_bool),
            allowed_origins=read("SPENDPLANE_ALLOWED_ORIGINS", _origins, ""),
            max_query_depth=read("SPENDPLANE_MAX_QUERY_DEPTH", _int_between(2, 100), "12"),
            max_query_tokens=read("SPENDPLANE_MAX_QUERY_TOKENS", _int_between(50, 100_000), "2000"),
            max_query_aliases=read("SPENDPLANE_MAX_QUERY_ALIASES", _int_between(1, 1000), "20"),
            max_subscriptions_per_connection=read(
                "SPENDPLANE_MAX_SUBSCRIPTIONS_PER_CONNECTION", _int_between(1, 1000), "25"
            ),
            max_subscriptions_per_principal=read(
                "SPENDPLANE_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", _int_between(1, 10_000), "50"
            ),
            log_level=read("SPENDPLANE_LOG_LEVEL", _log_level, "info"),
            alert_webhook_url=read.optional("ALERT_WEBHOOK_URL", _http_url),
            smtp=_smtp_settings(read),
            alert_delivery=_alert_delivery_settings(read),
            jobs_enabled=read("SPENDPLANE_JOBS", _bool, "true"),
            webhook_key=read.optional("SPENDPLANE_WEBHOOK_KEY", _non_blank),
            default_key_budget=read("DEFAULT_KEY_BUDGET_USD", _usd_or_zero, "100"),
            enforcement_failure_mode=read("ENFORCEMENT_FAILURE_MODE", _failure_mode, "open"),
            enforcement_timeout_ms=read("ENFORCEMENT_TIMEOUT_MS", _int_between(10, 60_000), "1000"),
            reservation_ttl_seconds=read("RESERVATION_TTL_SECONDS", _int_between(10, 86_400), "900"),
            spend_refresh_seconds=read("SPEND_REFRESH_SECONDS", _seconds, "2"),
            price_map_url=read("LITELLM_PRICE_MAP_URL", _optional_source, LITELLM_PRICE_MAP_URL),
            price_map_cache=read("LITELLM_PRICE_MAP_CACHE", _non_blank, "./spendplane-price-map.json"),
            litellm_config_path=read.optional("LITELLM_CONFIG_PATH", _existing_file),
            self_hosted_models=read("SELF_HOSTED_MODELS", _self_hosted, ""),
            report_max_days=read("SPENDPLANE_REPORT_MAX_DAYS", _int_between(7, 3660), "366"),
            time_zone=read("SPENDPLANE_TIME_ZONE", _time_zone, "UTC"),
            unpriced_model_price=read("UNPRICED_MODEL_PRICE", _unpriced_price, "auto"),
            rollup_recheck_days=read("SPENDPLANE_ROLLUP_RECHECK_DAYS", _int_between(1, 3660), "62"),
            rollup_schedule=read("SPENDPLANE_ROLLUP_SCHEDULE", _cron, "*/10 * * * *"),
            forecast_schedule=read("SPENDPLANE_FORECAST_SCHEDULE", _cron, "30 2 * * *"),
            reports_from_raw=read("SPENDPLANE_REPORTS_FROM_RAW", _bool, "false"),
            sap=SapSettings(
                company_code=read("SPENDPLANE_SAP_COMPANY_CODE", _sap_code(4), "1000"),
                controlling_area=read("SPENDPLANE_SAP_CONTROLLING_AREA", _sap_code(4), "1000"),
                gl_account=read("SPENDPLANE_SAP_GL_ACCOUNT", _sap_code(10), "0000620000"),
                cost_element=read("SPENDPLANE_SAP_COST_ELEMENT", _sap_code(10), "0000620000"),
                sender_cost_center=read("SPENDPLANE_SAP_SENDER_COST_CENTER", _sap_code(10), "0000100000"),
                document_type=read("SPENDPLANE_SAP_DOCUMENT_TYPE", _sap_code(2), "SA"),
                date_format=read("SPENDPLANE_SAP_DATE_FORMAT", _sap_date_format, "DD.MM.YYYY"),
            ),
            sla=_sla_settings(read),
        )
        if settings.soft_limit_threshold > settings.hard_limit_threshold:
            raise ConfigError(
                "SOFT_LIMIT_THRESHOLD",
                f"{settings.soft_limit_threshold} is above HARD_LIMIT_THRESHOLD {settings.hard_limit_threshold}",
            )
        return settings


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (required, never skipped); port 587
    SSL = "ssl"  # TLS from the first byte ("SMTPS"); port 465
    NONE = "none"  # no encryption: a relay on localhost or a private network only; port 25


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    sender: str
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: SmtpSecurity = SmtpSecurity.STARTTLS


@dataclass(frozen=True)
class AlertDeliverySettings:
    """Retries of alert emails and webhook posts: attempt n failing waits backoff * 2^(n-1) (at most an hour)."""

    max_attempts: int = 10
    backoff_seconds: int = 30
    timeout_seconds: int = 10
    sweep_seconds: int = 30


_SMTP_DEFAULT_PORTS = {SmtpSecurity.STARTTLS: "587", SmtpSecurity.SSL: "465", SmtpSecurity.NONE: "25"}


def _smtp_settings(read: _Reader) -> SmtpSettings | None:
    host = read.optional("SMTP_HOST", _non_blank)
    if host is None:
        return None
    security = read("SMTP_TLS", _smtp_security, "starttls")
    username = read.optional("SMTP_USERNAME", _non_blank)
    password = read.optional("SMTP_PASSWORD", _non_blank)
    if password is not None and username is None:
        raise ConfigError("SMTP_USERNAME", "must be set when SMTP_PASSWORD is")
    if username is not None and password is None:
        raise ConfigError("SMTP_PASSWORD", "must be set when SMTP_USERNAME is")
    sender = read.optional("SMTP_FROM", _mailbox)
    if sender is None:
        raise ConfigError("SMTP_FROM", "must be set when SMTP_HOST is: the sender of alert emails")
    return SmtpSettings(
        host=host,
        sender=sender,
        port=read("SMTP_PORT", _int_between(1, 65535), _SMTP_DEFAULT_PORTS[security]),
        username=username,
        password=password,
        security=security,
    )


def _alert_delivery_settings(read: _Reader) -> AlertDeliverySettings:
    return AlertDeliverySettings(
        max_attempts=read("ALERT_DELIVERY_MAX_ATTEMPTS", _int_between(1, 100), "10"),
        backoff_seconds=read("ALERT_DELIVERY_BACKOFF_SECONDS", _int_between(1, 3600), "30"),
        timeout_seconds=read("ALERT_DELIVERY_TIMEOUT_SECONDS", _int_between(1, 300), "10"),
        sweep_seconds=read("ALERT_DELIVERY_SWEEP_SECONDS", _int_between(1, 3600), "30"),
    )


@dataclass(frozen=True)
class SlaSettings:
    """The health collector runs every `collector_interval_minutes` (a divisor of 60, so its ticks fall on the same
    minutes every hour) over the last `health_window_minutes`; a violation resolves itself after
    `healthy_windows_to_resolve` healthy runs in a row; snapshots are kept `health_retention_days`. A metric is
    judged only on at least `min_requests` requests (a handful of calls says little about a provider)."""

    collector_interval_minutes: int = 5
    health_window_minutes: int = 60
    healthy_windows_to_resolve: int = 3
    health_retention_days: int = 30
    min_requests: int = 20

    @property
    def collector_cron(self) -> str:
        if self.collector_interval_minutes == 60:
            return "0 * * * *"
        return f"*/{self.collector_interval_minutes} * * * *"


def _sla_settings(read: _Reader) -> SlaSettings:
    interval = read("SLA_COLLECTOR_INTERVAL_MINUTES", _minutes_dividing_an_hour, "5")
    window = read("SLA_HEALTH_WINDOW_MINUTES", _int_between(1, 1440), "60")
    if window < interval:
        raise ConfigError(
            "SLA_HEALTH_WINDOW_MINUTES", f"{window} is shorter than SLA_COLLECTOR_INTERVAL_MINUTES {interval}"
        )
    return SlaSettings(
        collector_interval_minutes=interval,
        health_window_minutes=window,
        healthy_windows_to_resolve=read("SLA_HEALTHY_WINDOWS_TO_RESOLVE", _int_between(1, 1000), "3"),
        health_retention_days=read("SLA_HEALTH_RETENTION_DAYS", _int_between(1, 3650), "30"),
        min_requests=read("SLA_MIN_REQUESTS", _int_between(1, 1_000_000), "20"),
    )


def _minutes_dividing_an_hour(raw: str) -> int:
    value = int(raw)
    if value < 1 or 60 % value:
        raise ValueError("must be a number of minutes that divides 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
    return value


def _smtp_security(raw: str) -> SmtpSecurity:
    try:
        return SmtpSecurity(raw.lower())
    except ValueError:
        raise ValueError(f"must be one of {', '.join(SmtpSecurity)}") from None


def _mailbox(raw: str) -> str:
    """An address, optionally with a display name: `alerts@example.com` or `Spendplane <alerts@example.com>`."""
    _name, address = parseaddr(raw)
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not an email address ({exc})") from exc
    return raw


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def __call__(self, name: str, parse: Callable[[str], T], default: str) -> T:
        raw = self.env.get(name)
        return self._parse(name, parse, default if raw is None or raw.strip() == "" else raw)

    def optional(self, name: str, parse: Callable[[str], T | None]) -> T | None:
        raw = self.env.get(name)
        return None if raw is None or raw.strip() == "" else self._parse(name, parse, raw)

    @staticmethod
    def _parse(name: str, parse: Callable[[str], T], raw: str) -> T:
        try:
            return parse(raw.strip())
        except (ValueError, InvalidOperation) as exc:
            raise ConfigError(name, f"{exc} (got {raw!r})") from exc


def _non_blank(raw: str) -> str:
    return raw


def _jwt_secret(raw: str) -> str:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes for HS256; leave it unset to have one generated")
    return raw


def _fraction(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value <= 0 or value > 10:
        raise ValueError("must be a fraction of the monthly limit above 0 and at most 10 (0.8 means 80%)")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _auto_bool(raw: str) -> bool | None:
    return None if raw.lower() == "auto" else _bool(raw)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an http(s) origin")
    return origins


def _usd_or_zero(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value < 0 or value > 1_000_000_000:
        raise ValueError("must be an amount in USD from 0 (off) to 1000000000")
    return value


def _failure_mode(raw: str) -> str:
    if raw.lower() not in {"open", "closed"}:
        raise ValueError("must be open (allow when the database is unavailable) or closed (block)")
    return raw.lower()


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0.1 <= value <= 3600:
        raise ValueError("must be a number of seconds from 0.1 to 3600")
    return value


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
            cost_in, cost_out = Decimal(first.strip()), Decimal(second.strip())
            if not (cost_in.is_finite() and cost_out.is_finite()) or cost_in < 0 or cost_out < 0:
                raise ValueError(f"{item!r}: prices must be non-negative numbers")
        models.append((name.strip(), cost_in, cost_out))
    return tuple(models)


def _http_url(raw: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://hooks.example.com/spendplane")
    return raw


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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = raw.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, America/Los_Angeles)") from None
    return name


def _log_level(raw: str) -> str:
    if raw.lower() not in {"critical", "error", "warning", "info", "debug"}:
        raise ValueError("must be one of critical, error, warning, info, debug")
    return raw.lower()


def _cron(raw: str) -> str:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(raw, datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"is not a five-field cron expression (UTC): {exc}") from None
    return raw


#: SAP user settings decide the date format an upload expects; these are the common ones.
SAP_DATE_FORMATS = {"DD.MM.YYYY": "%d.%m.%Y", "MM/DD/YYYY": "%m/%d/%Y", "YYYY-MM-DD": "%Y-%m-%d", "YYYYMMDD": "%Y%m%d"}


def _sap_date_format(raw: str) -> str:
    if raw.upper() not in SAP_DATE_FORMATS:
        raise ValueError(f"must be one of {', '.join(SAP_DATE_FORMATS)}")
    return raw.upper()


def _sap_code(length: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) > length or not raw.isalnum():
            raise ValueError(f"must be 1 to {length} letters or digits (kept as text, leading zeros included)")
        return raw.upper()

    return parse
