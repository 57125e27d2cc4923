"""The baseline the webhook is compared with: a bare Starlette endpoint that parses the same JSON and answers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def bare(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse({"allowed": True, "action": "allow", "call_id": data.get("litellm_call_id")})


app = Starlette(routes=[Route("/webhook/pre-request", bare, methods=["POST"])])
