"""File downloads: a streamed response (chunks from an async generator) with a Content-Disposition name."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def download(
    chunks: AsyncIterator[bytes], *, filename: str, media_type: str, headers: dict[str, str] | None = None
) -> StreamingResponse:
    safe = _UNSAFE.sub("_", filename)[:200] or "download"
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{safe}"', **(headers or {})},
    )


def query_int(raw: str | None, field: str, default: int) -> int:
    from resolvers.errors import InvalidInput

    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(field, f"must be an integer (got {raw!r})") from None
