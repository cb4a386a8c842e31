"""The http service sans-I/O: both parsers pass the same suite, whatever the chunking."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.services.http import SERVICE
from servers.services.http.parsers import PARSERS
from tests.http_parse import GET, responses

PARSER_NAMES = list(PARSERS)


def session(parser: str, **options):
    return dataclasses.replace(SERVICE, parser=parser, **options).session()


def feed_all(sess, chunks) -> tuple[bytes, int]:
    out, requests = b"", 0
    for chunk in chunks:
        reply, done = sess.feed(chunk)
        out += reply
        requests += done
    return out, requests


@pytest.fixture(params=PARSER_NAMES)
def parser(request) -> str:
    return request.param


def test_get_root_is_hello_world_with_the_headers_every_response_has(parser):
    sess = session(parser)
    reply, done = sess.feed(GET)
    [(status, headers, body)] = responses(reply, ["GET"])
    assert (status, body, done) == (200, b"Hello, World!", 1)
    assert headers["content-type"].startswith("text/plain")
    assert headers["content-length"] == "13" and headers["server"] and headers["date"].endswith("GMT")
    assert "connection" not in headers and not sess.closing  # HTTP/1.1: keep-alive
    assert sess.timeout == SERVICE.keepalive_timeout


def test_pipelined_requests_are_answered_in_order(parser):
    data = (GET + b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            + b"POST /upper HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    reply, done = session(parser).feed(data)
    got = responses(reply, ["GET", "HEAD", "POST", "POST", "GET"])
    assert done == 5
    assert [(status, body) for status, _, body in got] == [
        (200, b"Hello, World!"), (200, b""), (200, b"hello"), (200, b"ABCDE"), (200, b"ok\n")]
    assert got[1][1]["content-length"] == "13"  # HEAD: GET's headers, no body


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 200), max_size=12), parser=st.sampled_from(PARSER_NAMES))
def test_any_chunking_gives_the_same_responses(cuts, parser):
    data = (GET + b"POST /upper HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n" + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    reply, done = feed_all(session(parser), chunks)
    assert done == 3
    assert [body for _, _, body in responses(reply, ["GET", "POST", "POST"])] == [
        b"Hello, World!", b"ABC", b"hi"]


@pytest.mark.parametrize(("request_bytes", "connection", "closing"), [
    (b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "close", True),
    (b"GET / HTTP/1.0\r\n\r\n", "close", True),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", False),
])
def test_connection_persistence(parser, request_bytes, connection, closing):
    sess = session(parser)
    [(status, headers, body)] = responses(sess.feed(request_bytes)[0], ["GET"])
    assert (status, body) == (200, b"Hello, World!")
    assert headers["connection"] == connection
    assert sess.closing is closing
    if closing:
        assert sess.feed(GET) == (b"", 0)  # nothing more is read


def test_http_1_0_kept_alive_by_proxy_connection_still_says_so(parser):
    """llhttp reads Proxy-Connection as Connection: an HTTP/1.0 request it keeps alive that
    way is answered as HTTP/1.0 (a Connection header), never with 1.1's silent default."""
    sess = session(parser)
    reply, _ = sess.feed(b"GET / HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n")
    [(status, headers, _)] = responses(reply, ["GET"])
    assert status == 200 and headers["connection"] == ("close" if sess.closing else "keep-alive")


def test_responses_kept_for_the_second_are_bounded(parser):
    """Whole responses are kept by target for requests without a body; targets come from
    clients, so only a few are kept, and every one still gets its own answer."""
    from servers.services.http.session import KEPT_ROUTES, RESPONSES

    sess = session(parser)
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(200)) + GET
    reply, done = sess.feed(data)
    got = responses(reply, ["GET"] * 201)
    assert done == 201 and [status for status, _, _ in got] == [404] * 200 + [200]
    assert len(RESPONSES._routes) <= KEPT_ROUTES


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"BLAH\x01 / HTTP/1.1\r\n\r\n", 400),
    (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    (b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    (b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 17000, 431),  # never ends
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
])
def test_bad_input_gets_its_status(parser, request_bytes, status):
    sess = session(parser)
    reply, done = sess.feed(request_bytes)
    [(got, headers, body)] = responses(reply, ["GET"])
    assert (got, done) == (status, 1)
    assert body and headers["content-length"] == str(len(body))
    if status == 405:
        assert headers["allow"] in ("GET, HEAD", "POST")
    else:
        assert sess.closing == (status != 404)


def test_a_chunked_body_over_the_limit_gets_413(parser):
    sess = session(parser, max_body=10)
    reply, _ = sess.feed(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"8\r\n12345678\r\n8\r\n12345678\r\n")
    assert responses(reply, ["POST"])[0][0] == 413 and sess.closing


def test_expect_100_continue_is_answered_before_the_body(parser):
    sess = session(parser)
    reply, done = sess.feed(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                            b"Expect: 100-continue\r\n\r\n")
    assert (reply, done) == (b"HTTP/1.1 100 Continue\r\n\r\n", 0)
    reply, done = sess.feed(b"abc")
    assert responses(reply, ["POST"])[0][2] == b"abc" and done == 1


def test_the_timeout_follows_the_state(parser):
    now = [100.0]
    sess = dataclasses.replace(SERVICE, parser=parser).session()
    sess.clock = lambda: now[0]
    sess._head_started = sess._last_feed = now[0]
    assert sess.timeout == SERVICE.header_timeout  # the first request's head: header timeout
    now[0] += 4
    sess.feed(b"GET / HTTP/1.1\r\n")  # trickling: the clock runs from the start of the head
    assert sess.timeout == pytest.approx(SERVICE.header_timeout - 4)
    sess.feed(b"Host: t\r\n\r\n")
    assert sess.timeout == SERVICE.keepalive_timeout  # between requests
    sess.feed(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nabc")
    assert sess.timeout is None  # inside a body: --idle-timeout alone
    assert sess.buffered == 3
    now[0] += 20
    sess.feed(b"def")
    sess.feed(b"ghiGET")
    assert sess.timeout == SERVICE.header_timeout  # the next head started with this feed


def test_both_parsers_give_the_same_bytes():
    data = GET + b"POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz" + \
        b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n" + b"GET / HTTP/1.0\r\n\r\n"
    replies = {name: session(name).feed(data) for name in PARSER_NAMES}
    assert len(set(replies.values())) == 1, replies
