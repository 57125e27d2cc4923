"""Where alerts go: only admins read an SLA definition's alert targets, and a webhook URL may not point anywhere
(no userinfo, whitespace or control characters; no private, loopback or link-local host unless allowed), checked
when it is given and again, resolved, when the alert is sent."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from models.alerts import AlertDeliveryRow
from models.db import Database
from resolvers.alerts import AlertDraft, AlertType, Severity, budget_dedupe_key, raise_alert
from resolvers.notifications import DeliveryReport, DeliveryWorker
from resolvers.platform import outbound
from resolvers.platform.config import ConfigError, Settings
from tests.conftest import NOW, Clock, started
from tests.receivers import WebhookReceiver
from tests.support import Api, add_virtual_key

pytestmark = pytest.mark.litellm_tables

CREATE = """mutation($input: SlaDefinitionInput!) { createSlaDefinition(input: $input) { id } }"""
LIST = "{ slaDefinitions { id name alertEmails alertWebhookUrl alertTargetsRedacted } }"
SLACK = "https://hooks.slack.com/services/T000/B000/secret-token"
SLA = {
    "name": "GPT-4o",
    "modelPattern": "gpt-4o*",
    "targetErrorRate": 0.01,
    "alertEmails": ["oncall@example.com"],
    "alertWebhookUrl": SLACK,
}
REST_SLA = {"name": "GPT-4o", "target_error_rate": 0.01, "alert_emails": ["oncall@example.com"]}


# ---------------------------------------------------------------------------------------------- who reads them


async def test_a_viewer_never_reads_an_slas_alert_webhook_or_emails(sla_api: Api, db: Database) -> None:
    api = sla_api
    created = (await api.data(CREATE, {"input": SLA}))["createSlaDefinition"]
    await add_virtual_key(db, "sk-viewer", user_id="carol", team_id="eng")
    viewer = await api.login("sk-viewer")

    [seen] = (await api.data(LIST, token=viewer))["slaDefinitions"]
    assert (seen["name"], seen["alertEmails"], seen["alertWebhookUrl"], seen["alertTargetsRedacted"]) == (
        "GPT-4o",
        [],
        None,
        True,
    )
    listed = (await api.client.get("/api/v1/sla/definitions", headers=api.bearer(viewer))).json()
    one = (await api.client.get(f"/api/v1/sla/definitions/{created['id']}", headers=api.bearer(viewer))).json()
    for body in (listed[0], one):
        assert (body["alert_emails"], body["alert_webhook_url"], body["alert_targets_redacted"]) == ([], None, True)
        assert "secret-token" not in str(body) and "oncall" not in str(body)


async def test_an_admin_reads_the_alert_targets(sla_api: Api) -> None:
    api = sla_api
    created = (await api.data(CREATE, {"input": SLA}))["createSlaDefinition"]
    [seen] = (await api.data(LIST))["slaDefinitions"]
    assert (seen["alertEmails"], seen["alertWebhookUrl"], seen["alertTargetsRedacted"]) == (
        ["oncall@example.com"],
        SLACK,
        False,
    )
    one = (await api.client.get(f"/api/v1/sla/definitions/{created['id']}", headers=api.bearer())).json()
    assert (one["alert_webhook_url"], one["alert_targets_redacted"]) == (SLACK, False)


# ---------------------------------------------------------------------------------------------- the URL rule


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("https://token@hooks.example.com/x", "user name or password"),
        ("https://hooks.example.com/x\r\nX-Evil: 1", "whitespace or control"),
        ("https://hooks.example.com/a b", "whitespace or control"),
        ("https://hooks.example.com/\x00", "whitespace or control"),
        ("https://hooks.example.com/\u2028", "whitespace or control"),
        ("ftp://hooks.example.com/x", "http(s) URL"),
        ("https:///no-host", "http(s) URL"),
        ("https://hooks.example.com:99999/x", "http(s) URL"),
        ("http://169.254.169.254/latest/meta-data/", "private"),
        ("http://127.0.0.1:8080/", "private"),
        ("http://127.1/", "private"),
        ("http://2130706433/", "private"),
        ("http://0x7f.0.0.1/", "private"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.10/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://100.64.0.1/", "private"),
        ("http://0.0.0.0/", "private"),
        ("http://[::1]/", "private"),
        ("http://[fe80::1]/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "private"),
        ("http://[::ffff:169.254.169.254]/", "private"),
        ("http://localhost:9000/", "this machine"),
        ("http://hooks.localhost/", "this machine"),
    ],
)
def test_a_webhook_url_that_could_reach_inside_is_refused(url: str, why: str) -> None:
    with pytest.raises(outbound.OutboundRefused, match="(?i)" + why.replace("(", r"\(").replace(")", r"\)")):
        outbound.check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url", [SLACK, "http://93.184.216.34/hook", "https://[2606:4700::1111]/x", "https://hooks.example.com:8443/a?b=c"]
)
def test_a_public_webhook_url_is_accepted(url: str) -> None:
    assert outbound.check_url(url, allow_private=False) == url


def test_private_destinations_pass_only_when_allowed_but_userinfo_never() -> None:
    assert outbound.check_url("http://127.0.0.1:8080/x", allow_private=True) == "http://127.0.0.1:8080/x"
    assert outbound.check_url("http://localhost/x", allow_private=True) == "http://localhost/x"
    with pytest.raises(outbound.OutboundRefused, match="user name"):
        outbound.check_url("http://admin:pw@127.0.0.1/x", allow_private=True)


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"ALERT_WEBHOOK_URL": "http://169.254.169.254/x"}, "private"),
        ({"ALERT_WEBHOOK_URL": "https://bot:hunter2@hooks.example.com/x"}, "user name"),
        ({"ALERT_WEBHOOK_URL": "https://hooks.example.com/a\tb"}, "whitespace"),
    ],
)
def test_alert_webhook_url_setting_is_refused_at_startup(env: dict[str, str], refused: str) -> None:
    with pytest.raises(ConfigError, match=refused) as caught:
        Settings.from_env(env)
    assert "ALERT_WEBHOOK_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)  # the setting is never echoed: it may carry a token


def test_alert_webhook_url_setting_may_be_private_when_allowed() -> None:
    env = {"ALERT_WEBHOOK_URL": "http://10.0.0.5/hook", "SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS": "true"}
    assert Settings.from_env(env).alert_webhook_url == "http://10.0.0.5/hook"
    assert Settings.from_env({}).allow_private_webhooks is False


@pytest.mark.parametrize(
    ("url", "private_ok"),
    [
        ("https://a:b@hooks.example.com/x", True),
        ("https://hooks.example.com/x\r\nHost: evil", True),
        ("http://169.254.169.254/", False),
        ("http://localhost:1/", False),
    ],
)
async def test_an_sla_webhook_url_is_checked_on_both_faces(
    settings: Settings, clock: Clock, url: str, private_ok: bool
) -> None:
    async with started(settings, clock, jobs_enabled=False, allow_private_webhooks=private_ok) as api:
        error = await api.error(CREATE, {"input": {**SLA, "alertWebhookUrl": url}})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "alertWebhookUrl"}
        rest = await api.client.post(
            "/api/v1/sla/definitions", json={**REST_SLA, "alert_webhook_url": url}, headers=api.bearer()
        )
        assert (rest.status_code, rest.json()["error"]["field"]) == (400, "alert_webhook_url")
        created = (await api.data(CREATE, {"input": SLA}))["createSlaDefinition"]
        path = f"/api/v1/sla/definitions/{created['id']}"
        changed = await api.client.put(path, json={"alert_webhook_url": url}, headers=api.bearer())
        assert (changed.status_code, changed.json()["error"]["field"]) == (400, "alert_webhook_url")


# ---------------------------------------------------------------------------------------------- at send time


def _draft() -> AlertDraft:
    return AlertDraft(
        type=AlertType.APPROACHING_LIMIT,
        severity=Severity.WARNING,
        message="Team engineering has spent $410 of its $500 monthly budget",
        dedupe_key=budget_dedupe_key("b-1", AlertType.APPROACHING_LIMIT, NOW),
        budget_id=None,
        entity_type="team",
        entity_id="engineering",
        team_id="engineering",
    )


async def _send_once(api: Api) -> DeliveryReport:
    runtime = api.runtime()
    async with runtime.work() as work:
        assert await raise_alert(work, _draft(), webhook_url=runtime.settings.alert_webhook_url) is not None
    worker = DeliveryWorker(runtime)
    try:
        return await worker.deliver_due()
    finally:
        await worker.stop()


async def _rows(db: Database) -> list[AlertDeliveryRow]:
    async with db.reader() as session:
        return list((await session.scalars(select(AlertDeliveryRow))).all())


@pytest.fixture
def resolving_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """A DNS answer for one name (what an attacker's DNS server would say), every other name as usual."""

    def answer(name: str, address: str) -> None:
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == name:
                return real(address, port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake)

    return answer


async def test_a_private_destination_is_refused_when_sent_and_never_posted(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """A URL that got past the input check (here: settings built in code) is checked again by the worker."""
    async with WebhookReceiver() as hook:
        app = partial(started, settings, clock, jobs_enabled=False, alert_webhook_url=hook.url)
        async with app(allow_private_webhooks=False) as api:
            assert await _send_once(api) == DeliveryReport(failed=1)
    [row] = await _rows(db)
    assert row.status == "failed" and row.attempts == 1  # permanent: never retried
    assert row.last_error is not None and "private, loopback or link-local" in row.last_error
    assert hook.posts == []


async def test_a_name_that_resolves_inside_is_refused_when_sent(
    settings: Settings, clock: Clock, db: Database, resolving_to: Callable[[str, str], None]
) -> None:
    async with WebhookReceiver() as hook:
        resolving_to("hooks.rebind.example", "127.0.0.1")
        url = f"http://hooks.rebind.example:{hook.port}/hooks/spend"
        async with started(
            settings, clock, jobs_enabled=False, alert_webhook_url=url, allow_private_webhooks=False
        ) as api:
            assert await _send_once(api) == DeliveryReport(failed=1)
    [row] = await _rows(db)
    assert row.last_error is not None and "hooks.rebind.example resolves to a private" in row.last_error
    assert hook.posts == []


async def test_a_delivery_goes_to_the_address_checked_with_the_name_as_host(
    settings: Settings, clock: Clock, db: Database, resolving_to: Callable[[str, str], None]
) -> None:
    """Allowed, the post goes to the address the worker resolved and checked; the receiver still sees its name."""
    async with WebhookReceiver() as hook:
        resolving_to("hooks.inside.example", "127.0.0.1")
        url = f"http://hooks.inside.example:{hook.port}/hooks/spend"
        async with started(settings, clock, jobs_enabled=False, alert_webhook_url=url) as api:
            assert await _send_once(api) == DeliveryReport(sent=1)
    [post] = hook.posts
    assert (post.path, post.headers["host"]) == ("/hooks/spend", f"hooks.inside.example:{hook.port}")


async def test_pinning_keeps_https_names_for_tls_and_refuses_userinfo() -> None:
    pinned = await outbound.pin("https://93.184.216.34/x?y=1", allow_private=False)
    assert (pinned.url, pinned.host, pinned.sni) == ("https://93.184.216.34:443/x?y=1", "93.184.216.34", None)
    ipv6 = await outbound.pin("http://[::1]:8080/x", allow_private=True)
    assert (ipv6.url, ipv6.host) == ("http://[::1]:8080/x", "[::1]:8080")
    with pytest.raises(outbound.OutboundRefused):
        await outbound.pin("http://u:p@127.0.0.1/", allow_private=True)


# ------------------------------------------------------------------------------------ host names DNS cannot carry

UNENCODABLE = ["http://a..example.com/x", "http://.example.com/x", "https://" + "a" * 64 + ".example.com/x"]


@pytest.mark.parametrize("url", UNENCODABLE)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_host_name_no_resolver_can_encode_is_refused(url: str, allow_private: bool) -> None:
    """An empty label or one longer than 63 characters can never be looked up (the resolver's IDNA encoding raises
    UnicodeError, not OSError): such a URL was accepted, then every delivery failed with a logged traceback."""
    with pytest.raises(outbound.OutboundRefused, match="host name"):
        outbound.check_url(url, allow_private=allow_private)
    assert outbound.check_url("https://b\u00fccher.example/x", allow_private=allow_private)  # IDNA maps it: a name


@pytest.mark.parametrize("url", UNENCODABLE)
async def test_an_sla_webhook_with_such_a_host_is_refused_on_both_faces(
    settings: Settings, clock: Clock, url: str
) -> None:
    async with started(settings, clock, jobs_enabled=False) as api:
        error = await api.error(CREATE, {"input": {**SLA, "alertWebhookUrl": url}})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "alertWebhookUrl"}
        rest = await api.client.post(
            "/api/v1/sla/definitions", json={**REST_SLA, "alert_webhook_url": url}, headers=api.bearer()
        )
        assert (rest.status_code, rest.json()["error"]["field"]) == (400, "alert_webhook_url")


async def test_a_stored_url_with_such_a_host_fails_once_when_sent_without_a_traceback(
    settings: Settings, clock: Clock, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL that got past the input check (settings built in code, a row from an older release) is refused by the
    worker as a URL, permanently, not retried as an unexpected error with a traceback each time."""
    async with started(settings, clock, jobs_enabled=False, alert_webhook_url=UNENCODABLE[0]) as api:
        assert await _send_once(api) == DeliveryReport(failed=1)
    [row] = await _rows(db)
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error is not None and "host name" in row.last_error
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
