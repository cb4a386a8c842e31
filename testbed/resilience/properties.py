"""2. properties: hypothesis -- any bytes cut any way get the service's transform back."""

from __future__ import annotations

from collections.abc import Callable

from clients.harness import EXPECTED, open_connection
from servers import registry
from testbed.resilience.common import REDUCED, Figures, Scale, running, stream_exchange

PIECES = (b"\n", b"\r\n", b"a", b"Z", b"\x00", b"\xff", b"\xc3\xa9", b" ", b"\xc3")


def run_properties(address: tuple[str, int], service: str, examples: int,
                   figures: Figures) -> None:
    """Hypothesis: for any bytes cut any way, the reply is the service's transform of them.

    One connection per example: the chunks are sent as separate writes, then a half-close;
    the reply read to EOF must equal ``transform(input)``. A falsifying example becomes a
    problem in ``figures`` (hypothesis shrinks it first).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    expect = EXPECTED[service]
    text = st.one_of(
        st.binary(max_size=512),
        st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=16)),
                 max_size=64).map(b"".join),
    )

    @st.composite
    def chunked(draw: Callable) -> tuple[bytes, list[bytes]]:
        unit = draw(text)
        # Sometimes long: repeated past MAX_PENDING_LINE (64 KiB) to stream an overlong line.
        data = unit * (draw(st.integers(1, 300)) if unit and draw(st.booleans()) else 1)
        cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
        bounds = [0, *cuts, len(data)]
        return data, [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(chunked())
    def reply_is_transform(case: tuple[bytes, list[bytes]]) -> None:
        data, pieces = case
        with open_connection(*address, timeout=10) as sock:
            reply, kind = stream_exchange(sock, pieces, final=True)
        wanted = expect(data)
        if kind is not None or reply != wanted:
            figures.deny(kind or "mismatch")
            raise AssertionError(f"{service}: {len(data)} bytes in {len(pieces)} pieces: "
                                 f"reply of {len(reply)} bytes ({kind or 'differs'})")
        figures.served(len(data))

    try:
        reply_is_transform()
    except Exception as exc:  # noqa: BLE001 - falsified, or flaky: either way a problem
        notes = " ".join(getattr(exc, "__notes__", []))
        figures.problems.append(f"property falsified: {exc} {notes}"[:600])
        # the shrinking runs counted as failures; what matters is the falsified property
        figures.bytes_lost += 1


def check_properties(model: str, scale: Scale = REDUCED) -> Figures:
    """The property for every service, one server per service."""
    figures = Figures(model, "properties")
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        figures.measure("skipped", "hypothesis is not installed (pip install testbed[test])")
        return figures
    services = registry.line_services()  # the property is the line services' transform
    for service in services:
        with running(model, service) as server:
            run_properties(server.address, service, scale.examples, figures)
    figures.measure("examples", f"{scale.examples} per service x {len(services)}")
    return figures
