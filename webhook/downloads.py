"""File downloads: a streamed response (chunks from an async generator) with a Content-Disposition name."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Send

from models.db import database_unreachable

log = logging.getLogger("spendplane.downloads")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Download(StreamingResponse):
    """A streamed file whose failures are honest and quiet:

    - the first chunk is read before the status goes out, so whatever fails before any byte is sent (bad input,
      the database unreachable) is answered by the app's error handlers (a 4xx or a 503), not a 200;
    - a failure after the 200 is logged as one line and the connection closes without the end of the body (the
      client sees an incomplete download, never a truncated file that looks whole), instead of a traceback and
      a "500" that cannot be sent anymore.
    """

    async def stream_response(self, send: Send) -> None:
        chunks = aiter(self.body_iterator)
        chunk = await anext(chunks, None)  # raises before anything was sent: the error handlers answer
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        sent = 0
        while chunk is not None:
            body = chunk.encode(self.charset) if isinstance(chunk, str) else bytes(chunk)
            await send({"type": "http.response.body", "body": body, "more_body": True})  # OSError: client gone
            sent += len(body)
            try:
                chunk = await anext(chunks, None)
            except Exception as exc:  # noqa: BLE001 - after the 200 there is nobody left to tell but the log
                reason = "the database became unreachable" if database_unreachable(exc) else type(exc).__name__
                log.warning(
                    "download %s stopped after %d bytes (%s: %s); closing without the end of the body",
                    self.headers.get("content-disposition", ""),
                    sent,
                    reason,
                    exc,
                )
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def download(
    chunks: AsyncIterator[bytes], *, filename: str, media_type: str, headers: dict[str, str] | None = None
) -> StreamingResponse:
    safe = _UNSAFE.sub("_", filename)[:200] or "download"
    return Download(
        chunks,
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{safe}"', **(headers or {})},
    )


#: A whole number as the document's `integer` says: ASCII digits with an optional minus (Python's int() also takes
#: `1_0`, `+3` and other scripts' digits such as `٣`).
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def query_int(raw: str | None, field: str, default: int) -> int:
    """Every whole-number query parameter's reader: blanks trimmed, empty meaning `default`."""
    from resolvers.platform.errors import InvalidInput

    text = (raw or "").strip()
    if text == "":
        return default
    if _INTEGER.fullmatch(text) is None:
        raise InvalidInput(field, f"must be an integer (got {text[:40]!r})")
    return int(text)
