"""Real servers on free loopback ports that receive what spendplane sends: an SMTP server (aiosmtpd) and an HTTP
server for the alert webhook that answers with scripted statuses."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Generic, Self, TypeVar

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    """A port nothing listens on (yet): connecting to it is refused until a receiver starts there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


T = TypeVar("T")


class Receiver(Generic[T]):
    """A server listening on loopback for what the test awaits with `next()`; `start` binds it."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: asyncio.Queue[T] = asyncio.Queue()

    async def start(self) -> asyncio.Server:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._server = await self.start()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def next(self) -> T:
        return await asyncio.wait_for(self.received.get(), 10)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


class SmtpReceiver(Receiver[Mail]):
    """`async with SmtpReceiver() as smtp:` an SMTP server in this event loop; `await smtp.next()` is the next mail.

    `refuse` lists recipients answered with a permanent 550; with `login` set, AUTH must match it."""

    def __init__(self, *, refuse: tuple[str, ...] = (), login: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.login = login
        self.logins: list[str] = []

    async def start(self) -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(self, hostname="smtp.test", authenticator=self._authenticate, auth_require_tls=False),
            "127.0.0.1",
            self.port,
        )

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        await self.received.put(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted"


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class WebhookReceiver(Receiver[Post]):
    """`async with WebhookReceiver(statuses=[503]) as hook:` an HTTP server answering POSTs with the scripted
    statuses in turn, then 200 (`next()` is the next accepted post). `port` may be fixed in advance (see
    `free_port`); `delay` makes each answer take that long (a slow receiver keeps several senders busy)."""

    def __init__(self, *, statuses: list[int] | None = None, port: int = 0, delay: float = 0.0) -> None:
        super().__init__(port)
        self.statuses = list(statuses or [])
        self.delay = delay
        self.posts: list[Post] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/spend"

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._answer, "127.0.0.1", self.port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _method, path, _version = head[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.statuses.pop(0) if self.statuses else 200
            await asyncio.sleep(self.delay)
            post = Post(path, headers, json.loads(body))
            self.posts.append(post)
            if status < 300:
                await self.received.put(post)
            answer = b"busy, try later" if status >= 300 else b"ok"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode() + answer
            )
            await writer.drain()
        finally:
            writer.close()
