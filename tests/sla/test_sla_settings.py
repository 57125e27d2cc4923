"""SLA monitoring's settings come from the environment; a bad value names its variable."""

from __future__ import annotations

import pytest

from resolvers.platform.config import ConfigError, Settings, SlaSettings


def test_the_defaults_follow_the_guide() -> None:
    sla = Settings.from_env({}).sla
    assert sla == SlaSettings(
        collector_interval_minutes=5,
        health_window_minutes=60,
        healthy_windows_to_resolve=3,
        health_retention_days=30,
        min_requests=20,
    )
    assert sla.collector_cron == "*/5 * * * *"


def test_values_are_read() -> None:
    sla = Settings.from_env(
        {
            "SLA_COLLECTOR_INTERVAL_MINUTES": "60",
            "SLA_HEALTH_WINDOW_MINUTES": "120",
            "SLA_HEALTHY_WINDOWS_TO_RESOLVE": "1",
            "SLA_HEALTH_RETENTION_DAYS": "7",
            "SLA_MIN_REQUESTS": "100",
        }
    ).sla
    assert (sla.collector_cron, sla.health_window_minutes, sla.healthy_windows_to_resolve) == ("0 * * * *", 120, 1)
    assert (sla.health_retention_days, sla.min_requests) == (7, 100)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLA_COLLECTOR_INTERVAL_MINUTES", "7"),  # does not divide an hour
        ("SLA_COLLECTOR_INTERVAL_MINUTES", "0"),
        ("SLA_COLLECTOR_INTERVAL_MINUTES", "five"),
        ("SLA_HEALTH_WINDOW_MINUTES", "0"),
        ("SLA_HEALTH_WINDOW_MINUTES", "3"),  # shorter than the interval
        ("SLA_HEALTHY_WINDOWS_TO_RESOLVE", "0"),
        ("SLA_HEALTH_RETENTION_DAYS", "-1"),
        ("SLA_MIN_REQUESTS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
