"""spendplane's plugin for a LiteLLM proxy: budget checks before every call, refused with a true HTTP 429.

Copy this file next to the proxy's config.yaml (`spendplane litellm-plugin -o DIR` writes it there) and add:

    litellm_settings:
      callbacks: ["spendplane_litellm.proxy_handler_instance"]

Settings (environment of the proxy): SPENDPLANE_URL (default http://127.0.0.1:8086), SPENDPLANE_WEBHOOK_KEY
(the shared secret; LiteLLM's master key works when spendplane has none), SPENDPLANE_TIMEOUT seconds (default
2), SPENDPLANE_FAILURE_MODE open|closed (default open): what happens when spendplane does not answer (or answers
401/403/404/5xx). A request spendplane cannot read at all (400/413/422: only a body over its size limit, since it
clips what clients send) is refused whatever the mode, so no client can switch budgets off.

It needs only what a LiteLLM proxy already has (httpx, fastapi, litellm); outside a proxy (spendplane's own tests)
it falls back to Starlette's HTTPException and a plain base class.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

try:  # inside a LiteLLM proxy
    from fastapi import HTTPException
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # spendplane's own tests
    from starlette.exceptions import HTTPException

    CustomLogger = object

log = logging.getLogger("spendplane.litellm")


class SpendplaneBudgetHook(CustomLogger):  # type: ignore[misc]  # litellm is only there inside a proxy
    """LiteLLM calls `async_pre_call_hook` before every request; a refusal becomes the client's HTTP 429."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
        failure_mode: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get("SPENDPLANE_URL", "http://127.0.0.1:8086")).rstrip("/")
        self.key = key or os.environ.get("SPENDPLANE_WEBHOOK_KEY") or os.environ.get("LITELLM_MASTER_KEY", "")
        self.timeout = timeout or float(os.environ.get("SPENDPLANE_TIMEOUT", "2"))
        self.failure_mode = (failure_mode or os.environ.get("SPENDPLANE_FAILURE_MODE", "open")).lower()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # one pooled client for the proxy's lifetime
            self._client = httpx.AsyncClient(timeout=self.timeout, headers={"x-api-key": self.key})
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        payload = check_payload(user_api_key_dict, data, call_type)
        try:
            response = await self._http().post(f"{self.url}/webhook/pre-request", json=payload)
        except httpx.HTTPError as exc:
            return self._unavailable(data, f"{type(exc).__name__}: {exc}")
        if response.status_code == 429:
            body = _json(response)
            error = body.get("error") or {}
            kind = error.get("type") or "budget_exceeded"
            # The client is the key's holder: it gets `client_message`, written for it (a budget outside its key,
            # user and team without name or figures). `error.message` names the budget with its figures: it is
            # the operator's, kept in the proxy's log, never in the client's answer (nor a spendplane too old to
            # send `client_message`: the client then reads only the refusal's type).
            log.info("spendplane refused %s: %s", data.get("litellm_call_id"), error.get("message"))
            told = body.get("client_message")
            raise HTTPException(
                status_code=429,
                detail={"error": f"{kind}: {told if isinstance(told, str) and told else 'budget exceeded'}"},
                headers={"retry-after": response.headers.get("retry-after", "60")},
            )
        if response.status_code in (400, 413, 422):
            # The request itself could not be checked (spendplane clips what clients send, so this is a payload
            # no budget check can read, such as one over its size limit): letting it through unchecked would let
            # a client switch budgets off, so it is refused.
            error = _json(response).get("error") or {}
            raise HTTPException(
                status_code=413 if response.status_code == 413 else 400,
                detail={"error": f"budget check impossible: {error.get('message', 'the request cannot be read')}"},
            )
        if response.status_code != 200:  # 401/403/404: misconfigured; 5xx: down. The failure mode decides.
            return self._unavailable(data, f"spendplane answered HTTP {response.status_code}")
        body = _json(response)
        routed = body.get("model")
        if isinstance(routed, str) and routed and routed != data.get("model"):
            log.info("spendplane routes %s to %s", data.get("model"), routed)
            data["model"] = routed  # a failover rule is active for the model asked for
        if body.get("warning"):
            log.warning("spendplane: %s", body["warning"])
        return data

    def _unavailable(self, data: dict[str, Any], reason: str) -> dict[str, Any]:
        log.warning("spendplane unavailable, failing %s: %s", self.failure_mode, reason)
        if self.failure_mode == "closed":  # the reason (addresses, statuses) is the operator's, in the log
            raise HTTPException(
                status_code=429,
                detail={"error": "budget service unavailable"},
                headers={"retry-after": "30"},
            )
        return data


def check_payload(user_api_key_dict: Any, data: dict[str, Any], call_type: Any) -> dict[str, Any]:
    """What the pre-request webhook needs, from LiteLLM's UserAPIKeyAuth and request data."""
    key = getattr(user_api_key_dict, "api_key", None) or getattr(user_api_key_dict, "token", None)
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens")
    payload: dict[str, Any] = {
        "litellm_call_id": data.get("litellm_call_id"),
        "api_key_hash": key,
        "user_id": getattr(user_api_key_dict, "user_id", None),
        "team_id": getattr(user_api_key_dict, "team_id", None),
        "end_user_id": getattr(user_api_key_dict, "end_user_id", None) or data.get("user"),
        "model": data.get("model"),
        "call_type": str(call_type),
    }
    if isinstance(data.get("messages"), list):
        payload["messages"] = data["messages"]
    elif isinstance(data.get("prompt"), (str, list)):  # text, texts, or token ids
        payload["prompt"] = data["prompt"]
    for name in ("tools", "functions"):  # definitions a provider bills as input
        if data.get(name):
            payload[name] = data[name]
    if isinstance(max_tokens, int) and max_tokens > 0:
        payload["max_tokens"] = max_tokens
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("tags"), list):
        payload["metadata"] = {"tags": metadata["tags"]}
    if isinstance(data.get("tags"), list):
        payload["tags"] = data["tags"]
    request = data.get("proxy_server_request")
    headers = request.get("headers") if isinstance(request, dict) else None
    if isinstance(headers, dict):
        header = next((v for k, v in headers.items() if str(k).lower() == "x-litellm-tags"), None)
        if isinstance(header, str):
            payload["headers"] = {"x-litellm-tags": header}
    return {k: v for k, v in payload.items() if v is not None}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


proxy_handler_instance = SpendplaneBudgetHook()
