"""A client out to overspend: it reuses one call id for every request, pads prompts, asks for a model nobody
priced. Whatever it sends, what is admitted fits the budget, and a healthy database never answers `degraded`."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.adversarial.support import PATIENT, Tally, ask, budget, burst, post_spend, spend_event
from tests.conftest import Clock, started
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables


async def test_one_call_id_on_every_request_admits_no_more_than_the_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """LiteLLM lets clients set the call id (x-litellm-call-id). 300 requests at 1 USD, all with one call id, in
    waves of 10, against 50 USD left: each admission holds its own reservation."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="100")
        await add_spend(db, SpendLog(50, clock.now, team_id="eng"))
        await api.runtime().enforcement().refresh()
        tally = Tally()
        for _ in range(30):
            await burst([api], 10, tally, call_id="same-id-every-time", estimated_cost="1")
    assert tally.admitted <= 50, tally.statuses
    assert tally.admitted >= 45, tally.statuses  # and the budget is used, not refused wholesale
    assert tally.degraded == 0


async def test_settling_a_reused_call_id_ends_one_hold_per_spend_event(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The spend of each finished request arrives (same call id, its own request id): it ends exactly one hold,
    so the money of requests still running stays held. Waves of 10 are admitted, half of each wave finishes
    (1 USD each); at the end recorded spend plus what is still held never passed the limit."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        tally = Tally()
        finished = 0
        for wave in range(20):
            before = tally.admitted
            await burst([api], 10, tally, call_id="reused", estimated_cost="1")
            done = (tally.admitted - before) // 2
            events = [spend_event("reused", f"chatcmpl-{wave}-{i}", 1.0) for i in range(done)]
            if events:
                await post_spend(api, events)
                await post_spend(api, events)  # LiteLLM retries a post: nothing changes
            finished += done
            await api.runtime().enforcement().refresh()
        state = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
    assert Decimal(state["currentSpend"]) == finished
    # Every admitted request costs 1 USD: recorded, or still running (held).
    assert tally.admitted <= 50, tally.statuses
    assert Decimal(state["currentSpend"]) + Decimal(state["reserved"]) <= 50
    assert Decimal(state["reserved"]) == tally.admitted - finished
    assert tally.degraded == 0


async def test_two_instances_with_one_call_id_admit_no_more_than_the_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await budget(one, monthlyLimit="100")
        await add_spend(db, SpendLog(50, clock.now, team_id="eng"))
        for api in (one, two):
            await api.runtime().enforcement().refresh()
        tally = Tally()
        finished = 0
        for wave in range(40):
            before = tally.admitted
            await burst([one, two], 10, tally, call_id="shared", estimated_cost="1")
            done = (tally.admitted - before) // 2
            if done:  # spend posted to one instance settles holds on either, once
                target = (one, two)[wave % 2]
                await post_spend(target, [spend_event("shared", f"r-{wave}-{i}", 1.0) for i in range(done)])
            finished += done
            # Both instances hold holds of the call id: the spend goes to the smallest, bid for over one settling
            # delay (every instance refreshes, the delay passes, the lowest bidder claims).
            for api in (one, two):
                await api.runtime().enforcement().refresh()
            clock.now += one.runtime().enforcement().ledger.settle_delay
            for api in (one, two):
                await api.runtime().enforcement().refresh()
    assert tally.admitted <= 50, tally.statuses
    assert tally.admitted >= 40, tally.statuses
    assert tally.degraded == 0


async def test_a_huge_prompt_on_an_exhausted_budget_is_refused_at_once(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """2 M newlines against a budget already spent: refused from memory, nothing counted, never `degraded`."""
    async with started(settings, clock, enforcement_timeout_ms=300) as api:
        await budget(api, monthlyLimit="10")
        await add_spend(db, SpendLog(10, clock.now, team_id="eng"))
        await api.runtime().enforcement().refresh()
        padding = [{"role": "user", "content": "\n" * 2_000_000}]
        answers = await asyncio.gather(*(ask(api, f"pad-{i}", messages=padding) for i in range(4)))
    assert [(status, body["error"]["type"]) for status, body in answers] == [(429, "budget_exceeded")] * 4


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_a_huge_prompt_is_priced_by_its_length_not_the_failure_mode(
    settings: Settings, clock: Clock, db: Database, mode: str
) -> None:
    """With a healthy database, the failure mode never decides: a prompt too long to count is bounded by its
    length (it does not fit a small budget, and fits a big one), in either mode."""
    async with started(settings, clock, enforcement_failure_mode=mode, enforcement_timeout_ms=300) as api:
        await budget(api, monthlyLimit="1000")
        small = await budget(api, entityId="small", name="Small", monthlyLimit="0.05")
        padding = [{"role": "user", "content": "word " * 400_000}]  # 2 MB, beyond what is counted
        status, body = await ask(api, "big-1", messages=padding)
        assert (status, body["degraded"]) == (200, False)
        assert Decimal(str(body["estimated_cost_usd"])) >= Decimal("2000000") * Decimal("2.5") / 10**6
        status, body = await ask(api, "big-2", messages=padding, team_id="small")
        assert (status, body["error"]["type"]) == (429, "request_exceeds_budget")
        assert body["budget"]["id"] == small["id"]
        predicted = await api.client.post("/predict", json={"model": "gpt-4o", "messages": padding})
        assert predicted.status_code == 200, predicted.text[:300]
    assert predicted.json()["input_token_count"] == "upper_bound"


async def test_a_model_nobody_priced_is_held_at_a_conservative_price(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """300 requests for an unpriced model against 1 USD: each holds what the dearest known model would cost, so
    the budget admits only what that allows, and every answer says the price is missing."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="1")
        tally = Tally()
        answers: list[dict[str, object]] = []

        async def one(i: int) -> None:
            status, body = await ask(api, f"unpriced-{i}", model="in-house-llm", max_tokens=1000)
            tally.add(status, body, f"unpriced-{i}")
            answers.append(body)

        await asyncio.gather(*(one(i) for i in range(300)))
    held = [Decimal(str(a["estimated_cost_usd"])) for a in answers if a.get("allowed")]
    assert tally.admitted < 300
    assert sum(held) <= 1
    assert all(a.get("price_missing") for a in answers if a.get("allowed"))
    assert tally.degraded == 0


async def test_a_fixed_unpriced_price_is_what_is_held(settings: Settings, clock: Clock, db: Database) -> None:
    async with started(settings, clock, unpriced_model_price=(Decimal(100), Decimal(100))) as api:
        await budget(api, monthlyLimit="100")
        status, body = await ask(api, "fixed", model="in-house-llm", max_tokens=10_000, messages=[])
    # 3 tokens of reply priming in, 55% of max_tokens out (the standard profile), both at 100 USD per million.
    assert (status, body["price_missing"]) == (200, True)
    assert Decimal(str(body["estimated_cost_usd"])) == Decimal("0.5503")


async def test_budgets_hold_on_every_path_a_client_can_reach(api: Api, db: Database) -> None:
    """The Guardrail API decides on the same ledger: a reused call id there holds per request too."""
    import json

    from tests.adversarial.support import FIXTURES, GATEWAY

    await budget(api, monthlyLimit="0.001")
    sample = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
    sample["request_data"]["user_api_key_team_id"] = "eng"
    sample["litellm_call_id"] = "guard-same"
    actions = []
    for _ in range(50):
        response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
        actions.append(response.json()["action"])
    assert "BLOCKED" in actions
    assert actions.index("BLOCKED") < 50


async def test_text_outside_content_is_bounded_like_content(settings: Settings, clock: Clock, db: Database) -> None:
    """A message's `name` (or any field but `content`) is counted as prompt text too: 4 MB there must be priced by
    its length like 4 MB of content, not tokenized on the event loop (seconds per request), which stalled every
    concurrent decision past its deadline into a `degraded` answer with the database healthy. The deadline is 2 s,
    not the 300 ms of the other cases: parsing eight 4 MB bodies takes the loop a few hundred ms on a busy machine,
    while tokenizing one of them on the loop took seconds, so 2 s still tells the two apart."""
    async with started(settings, clock, enforcement_timeout_ms=2000) as api:
        await budget(api, monthlyLimit="100000")
        hidden = [{"role": "user", "content": "hi", "name": "a" * 4_000_000}]

        async def fresh_key(i: int) -> tuple[int, dict[str, object]]:
            # A key nobody has seen: its owner is looked up in the database, under the deadline.
            return await ask(api, f"fresh-{i}", api_key=f"sk-never-seen-{i}", team_id=None)

        answers = await asyncio.gather(
            *(coro for i in range(8) for coro in (fresh_key(i), ask(api, f"hidden-{i}", messages=hidden)))
        )
    assert [body.get("degraded") for _, body in answers if body.get("allowed")] == [False] * 16
    hidden_held = [Decimal(str(body["held_cost_usd"])) for _, body in answers[1::2]]
    assert min(hidden_held) >= Decimal(4_000_000) * Decimal("2.5") / 10**6  # bounded by its length, at least


@pytest.mark.parametrize("where", ["tags", "metadata", "header"])
async def test_a_tag_after_many_others_is_still_judged(
    settings: Settings, clock: Clock, db: Database, where: str
) -> None:
    """Tags are the client's, and the spend logs count a request against every tag it carries. A tag budget's tag
    sent after 40 others must still be judged: 10 requests at 1 USD against its 5 USD admit at most 5."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, name="Project", entityType="TAG", entityId="project-x", monthlyLimit="5")
        tags = [f"junk-{i}" for i in range(40)] + ["project-x"]
        sent: dict[str, object] = {
            "tags": {"tags": tags},
            "metadata": {"metadata": {"tags": tags}},
            "header": {"headers": {"x-litellm-tags": ",".join(tags)}},
        }[where]
        tally = Tally()
        for i in range(10):
            status, body = await ask(api, f"tagged-{i}", estimated_cost="1", **sent)
            tally.add(status, body, f"tagged-{i}")
    assert tally.admitted == 5, tally.statuses
    assert tally.degraded == 0


@pytest.mark.parametrize("shape", ["tool_calls", "tool_result_parts", "nested_parts"])
async def test_text_in_tool_calls_and_nested_parts_is_counted(
    settings: Settings, clock: Clock, db: Database, shape: str
) -> None:
    """A provider bills every text of the conversation: the arguments of an assistant's tool calls, a tool result
    given as content parts, parts inside parts. 1 MB of text there does not fit a 0.05 USD budget (about 200,000
    tokens of gpt-4o input), and is never held at the price of "hi"."""
    text = "word " * 200_000
    messages = {
        "tool_calls": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": text}}],
            },
        ],
        "tool_result_parts": [{"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": text}]}],
        "nested_parts": [  # Anthropic's shape: a tool result's own parts, a tool use's input
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": text}]}],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "f", "input": {"q": text}}]},
        ],
    }[shape]
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="0.05")
        status, body = await ask(api, "tooled", messages=messages)
    assert (status, body["error"]["type"]) == (429, "request_exceeds_budget"), body


async def test_tool_definitions_are_counted_on_every_path(settings: Settings, clock: Clock, db: Database) -> None:
    """Tool (function) definitions are prompt input the provider bills: 1 MB of them does not fit 0.05 USD,
    through the webhook, LiteLLM's plugin and the Guardrail API alike."""
    import json

    from tests.adversarial.support import FIXTURES, GATEWAY
    from webhook.litellm_plugin import check_payload

    text = "word " * 200_000
    tools = [{"type": "function", "function": {"name": "f", "description": text, "parameters": {"type": "object"}}}]
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="0.05")
        status, body = await ask(api, "tools", tools=tools)
        assert (status, body["error"]["type"]) == (429, "request_exceeds_budget"), body
        status, body = await ask(api, "functions", functions=[tools[0]["function"]])
        assert (status, body["error"]["type"]) == (429, "request_exceeds_budget"), body
        data = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
        payload = {**check_payload(None, data, "acompletion"), "team_id": "eng", "litellm_call_id": "plugin"}
        response = await api.client.post("/webhook/pre-request", json=payload, headers=GATEWAY)
        assert response.status_code == 429, response.text[:300]
        sample = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
        sample["request_data"]["user_api_key_team_id"] = "eng"
        sample["model"] = "gpt-4o"
        sample["tools"] = tools
        response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
        assert response.json()["action"] == "BLOCKED", response.text[:300]


async def test_a_prompt_of_token_ids_is_counted(settings: Settings, clock: Clock, db: Database) -> None:
    """OpenAI's completions take a prompt as token ids (one list, or a list of them): 300,000 ids are 300,000 input
    tokens the provider bills, so they do not fit 0.05 USD, through the webhook and LiteLLM's plugin alike."""
    from tests.adversarial.support import GATEWAY
    from webhook.litellm_plugin import check_payload

    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="0.05")
        for i, prompt in enumerate(([7] * 300_000, [[7] * 150_000, [8] * 150_000])):
            status, body = await ask(api, f"ids-{i}", messages=None, prompt=prompt)
            assert (status, body["error"]["type"]) == (429, "request_exceeds_budget"), body
            data = {"model": "gpt-4o", "prompt": prompt}
            payload = {**check_payload(None, data, "atext_completion"), "team_id": "eng", "litellm_call_id": f"p{i}"}
            response = await api.client.post("/webhook/pre-request", json=payload, headers=GATEWAY)
            assert response.status_code == 429, response.text[:300]


async def test_the_guardrail_api_prices_the_model_that_will_run(settings: Settings, clock: Clock, db: Database) -> None:
    """While a failover rule routes gpt-4o to a cheaper fallback, the plugin calls the fallback, but LiteLLM's
    Guardrail API cannot change the model: gpt-4o runs, so gpt-4o is what the request must hold. 40,000 tokens
    fit 0.05 USD at gpt-4o-mini's price, not at gpt-4o's."""
    import json

    from tests.adversarial.support import FIXTURES, GATEWAY

    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="0.05")
        api.runtime().enforcement().routes = {"gpt-4o": "gpt-4o-mini"}  # what SLA monitoring sets
        sample = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
        sample["request_data"]["user_api_key_team_id"] = "eng"
        sample["model"] = "gpt-4o"
        sample["structured_messages"] = [{"role": "user", "content": "word " * 40_000}]
        response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
        assert response.json()["action"] == "BLOCKED", response.text[:300]
        # The webhook's answer names the fallback, which its gateway calls: that is what it holds.
        status, body = await ask(api, "routed", model="gpt-4o", messages=sample["structured_messages"])
        assert (status, body["model"]) == (200, "gpt-4o-mini"), body
