"""Settings from the environment: defaults, LiteLLM's own DATABASE_URL, and a clear error naming the variable."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from resolvers.platform.config import ConfigError, Setting, Settings, SmtpSecurity, SmtpSettings, all_settings, declared
from resolvers.platform.settings_page import settings_table


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.render_as_string() == "sqlite+aiosqlite:///./spendplane.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8086)
    assert (settings.soft_limit_threshold, settings.hard_limit_threshold) == (Decimal("0.8"), Decimal("1.0"))
    assert settings.litellm_master_key is None and settings.jwt_secret is None
    assert settings.embedded_mode is True
    assert settings.graphiql is True


def test_litellms_database_url_is_accepted_as_written() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://llm:pw@db:5432/litellm?schema=public&sslmode=require"})
    url = settings.database_url
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.database, url.password) == ("db", "litellm", "pw")
    assert dict(url.query) == {"ssl": "require"}
    assert settings.embedded_mode is False
    assert Settings.from_env({"DATABASE_URL": "postgres://x@h/d"}).database_url.drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x@y/z"),
        ("DATABASE_URL", "::not a url::"),
        ("SOFT_LIMIT_THRESHOLD", "abc"),
        ("SOFT_LIMIT_THRESHOLD", "0"),
        ("HARD_LIMIT_THRESHOLD", "-1"),
        ("HARD_LIMIT_THRESHOLD", "NaN"),
        ("SPENDPLANE_PORT", "eighty"),
        ("SPENDPLANE_PORT", "70000"),
        ("SPENDPLANE_JWT_SECRET", "short"),
        ("SPENDPLANE_GRAPHIQL", "maybe"),
        ("SPENDPLANE_EMBEDDED", "perhaps"),
        ("SPENDPLANE_ALLOWED_ORIGINS", "localhost:5173"),
        ("SPENDPLANE_LOG_LEVEL", "loud"),
        ("SMTP_PORT", "smtp"),
        ("SMTP_TLS", "maybe"),
        ("SMTP_FROM", "not-an-address"),
        ("ALERT_DELIVERY_MAX_ATTEMPTS", "0"),
        ("ALERT_DELIVERY_BACKOFF_SECONDS", "soon"),
        ("ALERT_DELIVERY_TIMEOUT_SECONDS", "-1"),
        ("ALERT_DELIVERY_SWEEP_SECONDS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    mail = {"SMTP_HOST": "mail.example.com", "SMTP_FROM": "alerts@example.com"}  # so SMTP_* are read
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**mail, variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}:")


def test_soft_above_hard_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"SOFT_LIMIT_THRESHOLD": "0.9", "HARD_LIMIT_THRESHOLD": "0.8"})
    assert raised.value.variable == "SOFT_LIMIT_THRESHOLD"


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "LITELLM_MASTER_KEY": "sk-1234",
            "SPENDPLANE_JWT_SECRET": "s" * 32,
            "SOFT_LIMIT_THRESHOLD": "0.75",
            "HARD_LIMIT_THRESHOLD": "0.95",
            "SPENDPLANE_HOST": "0.0.0.0",
            "SPENDPLANE_PORT": "9000",
            "SPENDPLANE_GRAPHIQL": "off",
            "SPENDPLANE_EMBEDDED": "true",
            "SPENDPLANE_ALLOWED_ORIGINS": "http://localhost:5173, https://dash.example.com/",
        }
    )
    assert settings.litellm_master_key == "sk-1234"
    assert (settings.soft_limit_threshold, settings.hard_limit_threshold) == (
        Decimal("0.75"),
        Decimal("0.95"),
    )
    assert (settings.host, settings.port, settings.graphiql, settings.embedded_mode) == (
        "0.0.0.0",
        9000,
        False,
        True,
    )
    assert settings.allowed_origins == ("http://localhost:5173", "https://dash.example.com")


def test_smtp_and_alert_delivery_are_read() -> None:
    settings = Settings.from_env(
        {
            "SMTP_HOST": "smtp.example.com",
            "SMTP_FROM": "Spendplane <alerts@example.com>",
            "SMTP_USERNAME": "mailer",
            "SMTP_PASSWORD": "pw",
            "SMTP_TLS": "ssl",
            "ALERT_DELIVERY_MAX_ATTEMPTS": "4",
            "ALERT_DELIVERY_BACKOFF_SECONDS": "5",
        }
    )
    assert settings.smtp == SmtpSettings(
        host="smtp.example.com",
        sender="Spendplane <alerts@example.com>",
        port=465,  # the SMTPS port, as SMTP_TLS=ssl implies
        username="mailer",
        password="pw",
        security=SmtpSecurity.SSL,
    )
    assert "pw" not in repr(settings)
    assert (settings.alert_delivery.max_attempts, settings.alert_delivery.backoff_seconds) == (4, 5)
    assert Settings.from_env({}).smtp is None  # no SMTP_HOST: email alerts are off


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SMTP_HOST": "smtp.example.com"}, "SMTP_FROM"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_FROM": "a@example.com", "SMTP_PASSWORD": "pw"}, "SMTP_USERNAME"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_FROM": "a@example.com", "SMTP_USERNAME": "me"}, "SMTP_PASSWORD"),
    ],
)
def test_incomplete_smtp_settings_name_what_is_missing(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert raised.value.variable == variable


def test_the_listener_connection_keeps_tls() -> None:
    from models.db import asyncpg_dsn

    url = Settings.from_env({"DATABASE_URL": "postgresql://u:p@db/litellm?sslmode=verify-full"}).database_url
    assert asyncpg_dsn(url) == "postgresql://u:p@db/litellm?sslmode=verify-full"


def test_finops_settings_have_defaults_and_name_the_variable_when_wrong() -> None:
    settings = Settings.from_env({"SPENDPLANE_SAP_COMPANY_CODE": "0100", "SPENDPLANE_SAP_DATE_FORMAT": "yyyymmdd"})
    assert (settings.report_max_days, settings.rollup_recheck_days) == (366, 62)
    assert (settings.rollup_schedule, settings.forecast_schedule) == ("*/10 * * * *", "30 2 * * *")
    assert (settings.sap.company_code, settings.sap.date_format, settings.sap.gl_account) == (
        "0100",
        "YYYYMMDD",
        "0000620000",
    )
    for variable, value in (
        ("SPENDPLANE_REPORT_MAX_DAYS", "3"),
        ("SPENDPLANE_ROLLUP_RECHECK_DAYS", "soon"),
        ("SPENDPLANE_ROLLUP_SCHEDULE", "@hourly"),
        ("SPENDPLANE_FORECAST_SCHEDULE", "61 * * * *"),
        ("SPENDPLANE_SAP_COMPANY_CODE", "12345"),
        ("SPENDPLANE_SAP_GL_ACCOUNT", "62-00"),
        ("SPENDPLANE_SAP_DATE_FORMAT", "DD/MM/YY"),
        ("SPENDPLANE_REPORTS_FROM_RAW", "maybe"),
    ):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SOFT_LIMIT_THRESHOLD", "abc", "must be a fraction of the monthly limit above 0 and at most 10"),
        ("HARD_LIMIT_THRESHOLD", "1e", "must be a fraction of the monthly limit above 0 and at most 10"),
        ("SPENDPLANE_PORT", "notaport", "must be a whole number from 1 to 65535"),
        ("SPENDPLANE_PORT", "80.5", "must be a whole number from 1 to 65535"),
        ("SMTP_PORT", "smtp", "must be a whole number from 1 to 65535"),
        ("DEFAULT_KEY_BUDGET_USD", "a lot", "must be an amount in USD from 0 (off) to 1000000000"),
        ("DEFAULT_KEY_BUDGET_USD", "Infinity", "must be an amount in USD from 0 (off) to 1000000000"),
        ("SPEND_REFRESH_SECONDS", "soon", "must be a number of seconds from 0.1 to 3600"),
        ("SLA_COLLECTOR_INTERVAL_MINUTES", "five", "must be a number of minutes that divides 60"),
        ("SELF_HOSTED_MODELS", "mine=cheap/free", "'mine=cheap/free': prices must be non-negative numbers"),
        ("SPENDPLANE_EMBEDDED", "perhaps", "must be auto, true or false"),
    ],
)
def test_a_bad_value_is_explained_in_words_not_in_a_conversions_internals(variable: str, value: str, said: str) -> None:
    mail = {"SMTP_HOST": "mail.example.com", "SMTP_FROM": "alerts@example.com"}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**mail, variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}: {said}")
    assert message.endswith(f"(got {value!r})")
    for internals in ("decimal", "ConversionSyntax", "int()", "invalid literal", "could not convert", "<class"):
        assert internals not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SPENDPLANE_JWT_SECRET", "hunter2-short"),
        ("DATABASE_URL", "::hunter2-password::"),
    ],
)
def test_a_bad_secret_is_not_repeated_in_the_message(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert "hunter2" not in str(raised.value)


def test_every_field_is_declared_once_with_a_variable_and_a_description() -> None:
    found = list(declared(Settings))
    undeclared = [f.name for f, spec in found if spec is None]
    assert undeclared == [], "declare these with setting(...) or group(...) in resolvers/platform/config.py"
    names = [spec.env for spec in all_settings()]
    assert len(names) == len(set(names)), "an environment variable is declared twice"
    assert all(spec.doc.strip() and "\n" not in spec.doc for spec in all_settings())
    # every variable the service reads appears in the table
    assert {"DATABASE_URL", "SMTP_PASSWORD", "SPENDPLANE_SAP_DATE_FORMAT", "SLA_MIN_REQUESTS"} <= set(names)


def test_defaults_in_code_are_the_environment_defaults() -> None:
    """Settings() built in code and Settings.from_env({}) agree on everything but what never fetches in code."""
    from dataclasses import replace

    from resolvers.platform.config import LITELLM_PRICE_MAP_URL

    from_env = Settings.from_env({})
    assert from_env.price_map_url == LITELLM_PRICE_MAP_URL
    assert Settings().price_map_url is None  # code-built settings (tests, tools) never fetch the price map
    # ... and never create the guide's global budget at first start (the environment's default is `auto`).
    assert (from_env.global_budget_usd, Settings().global_budget_usd) == (None, 0)
    assert replace(from_env, price_map_url=None, global_budget_usd=0) == Settings()


def test_the_settings_table_in_the_docs_is_fresh(repo_root: Path) -> None:
    from graphql_api.reference import refresh

    page = (repo_root / "docs" / "settings.md").read_text()
    assert refresh(page) == page, "docs/settings.md is stale: run scripts/docs"
    for spec in all_settings():
        assert f"| `{spec.env}` |" in page


def test_the_table_shows_each_setting_with_its_default_and_what_it_accepts() -> None:
    table = settings_table()
    assert "| `SPENDPLANE_PORT` | `8086` | 1 to 65535 | listen port |" in table
    assert "| `SPENDPLANE_JWT_SECRET` | generated |" in table
    assert "| `SMTP_PORT` | by `SMTP_TLS` |" in table
    assert "| `SPENDPLANE_ALLOWED_ORIGINS` | empty |" in table
    spec = Setting("X_PIPE", str, "a|b", "one | two")
    assert settings_table([spec]).splitlines()[-1] == "| `X_PIPE` | `a\\|b` |  | one \\| two |"
