"""The HTTP service's application as WSGI, for gunicorn: ``gunicorn servers.apps.wsgi:app``.

Same routes and cost as ``testbed serve --service http``; settings from the
environment (see :mod:`servers.apps`). A ``--delay`` sleeps in the worker and
``--work-ms`` burns CPU in it, as in the blocking models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from servers.apps import settings
from servers.services.http import routes

COST, MAX_BODY = settings()

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"].encode("latin-1")
    head = method == b"HEAD"
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > MAX_BODY:
        return respond(start_response, routes.error(413), head)
    body = environ["wsgi.input"].read(int(length)) if length.isdigit() else \
        environ["wsgi.input"].read(MAX_BODY + 1)  # chunked: read to the end, or past the limit
    if len(body) > MAX_BODY:
        return respond(start_response, routes.error(413), head)
    target = environ.get("PATH_INFO", "/").encode("latin-1")
    answer = routes.answer(b"GET" if head else method, target, body)
    COST.block(1)
    return respond(start_response, answer, head)


def respond(start_response: StartResponse, answer: routes.Answer, head: bool) -> list[bytes]:
    headers = [("Content-Type", answer.content_type.decode()),
               ("Content-Length", str(len(answer.body)))]
    if answer.allow:
        headers.append(("Allow", answer.allow.decode()))
    start_response(f"{answer.status} {routes.REASONS[answer.status]}", headers)
    return [b"" if head else answer.body]
