"""The sans-I/O services: framing and transforms, whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servers.services.echo import SERVICE as ECHO
from servers.services.lines import MAX_PENDING_LINE
from servers.services.upper import SERVICE as UPPER


def run(service, chunks):
    session = service.session()
    out, requests = b"", 0
    for chunk in chunks:
        reply, done = session.feed(chunk)
        out += reply
        requests += done
    reply, done = session.close()
    return out + reply, requests + done


def test_upper_changes_ascii_letters_only_and_never_decodes():
    data = b"hello \xff\xfe caf\xc3\xa9 \x00 World\n"
    assert run(UPPER, [data]) == (b"HELLO \xff\xfe CAF\xc3\xa9 \x00 WORLD\n", 1)


def test_requests_are_lines_and_a_final_partial_line_counts():
    assert run(ECHO, [b"a\nb", b"c\n", b"tail"]) == (b"a\nbc\ntail", 3)
    assert run(ECHO, [b""]) == (b"", 0)
    assert run(ECHO, [b"\n\n"]) == (b"\n\n", 2)


def test_a_partial_line_is_held_until_its_newline():
    session = ECHO.session()
    assert session.feed(b"hel") == (b"", 0)
    assert session.feed(b"lo\nwor") == (b"hello\n", 1)
    assert session.close() == (b"wor", 1)


def test_an_overlong_line_is_streamed_not_held():
    session = UPPER.session()
    big = b"x" * (MAX_PENDING_LINE + 1)
    reply, done = session.feed(big)
    assert (reply, done) == (b"X" * len(big), 0)
    assert session.buffered == 0
    assert session.feed(b"y\n") == (b"Y\n", 1)
    assert session.close() == (b"", 0)


def test_an_overlong_last_line_still_counts_once_at_eof():
    session = ECHO.session()
    session.feed(b"z" * (MAX_PENDING_LINE + 10))
    assert session.close() == (b"", 1)


@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=20),
       st.sampled_from([ECHO, UPPER]))
def test_any_chunking_gives_the_transform_of_the_whole(data, cuts, service):
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    reply, requests = run(service, chunks)
    assert reply == service.transform(data)
    assert requests == data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
