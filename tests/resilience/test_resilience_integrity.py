"""1. Integrity: random sizes 0..1 MiB in random chunks over 20 connections, 0 bytes lost."""

from __future__ import annotations

import pytest

from testbed.resilience import check_integrity
from testbed.resilience.common import MAX_UDP_PAYLOAD, serves_udp
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", MODELS)
def test_no_byte_lost_or_altered(model, scale):
    figures = check_integrity(model, scale)
    assert figures.bytes_lost == 0
    assert not figures.denied, dict(figures.denied)
    assert figures.exchanges >= scale.exchanges
    assert figures.bytes_verified > 0
    if serves_udp(model):
        assert figures.measures["datagrams"].startswith(f"{scale.datagrams}/{scale.datagrams}")
        assert str(MAX_UDP_PAYLOAD) in figures.measures["datagrams"]
    no_problems(figures)
