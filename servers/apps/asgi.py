"""The HTTP service's application as ASGI, for uvicorn: ``uvicorn servers.apps.asgi:app``.

Same routes and cost as ``testbed serve --service http``; settings from the
environment (see :mod:`servers.apps`). A ``--delay`` is ``await asyncio.sleep``
and ``--work-ms`` burns CPU in the event loop, as in the asyncio model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from servers.apps import settings
from servers.services.http import routes

COST, MAX_BODY = settings()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            await respond(send, routes.error(413), head=False)
            return
        if not message.get("more_body", False):
            break
    method = scope["method"].encode()
    head = method == b"HEAD"
    target = scope.get("raw_path") or scope["path"].encode()
    answer = routes.answer(b"GET" if head else method, target, bytes(body))
    COST.burn(1)  # CPU in the event loop: every other client waits, as in the asyncio model
    if COST.delay:
        await asyncio.sleep(COST.delay)
    await respond(send, answer, head)


async def respond(send: Send, answer: routes.Answer, head: bool) -> None:
    headers = [(b"content-type", answer.content_type),
               (b"content-length", str(len(answer.body)).encode())]
    if answer.allow:
        headers.append((b"allow", answer.allow))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})
