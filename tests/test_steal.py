"""The hypervisor's share of the machine's CPU time (testbed.steal), read from the system."""

from __future__ import annotations

import sys
import time

import pytest

from testbed import steal


def test_the_share_is_of_the_cpu_time_that_passed_between_two_readings() -> None:
    assert steal.share(steal.CpuTimes(10.0, 100.0), steal.CpuTimes(13.0, 130.0)) == 0.1
    assert steal.share(steal.CpuTimes(10.0, 100.0), steal.CpuTimes(10.0, 100.0)) is None
    assert steal.share(None, steal.CpuTimes(1.0, 2.0)) is None


@pytest.mark.skipif(sys.platform != "linux", reason="steal is counted by Linux")
def test_the_machine_counts_it_and_time_passes_between_two_readings() -> None:
    before = steal.read()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # CPU time passes on this core at least
        pass
    after = steal.read()
    assert before is not None and after is not None
    assert after.total - before.total >= 0.2  # 0.3 s of one core, counted in 10 ms ticks
    assert 0.0 <= after.steal - before.steal <= after.total - before.total
    share = steal.share(before, after)
    assert share is not None and 0.0 <= share < 1.0


@pytest.mark.skipif(sys.platform != "linux", reason="steal is counted by Linux")
def test_a_set_of_cores_is_read_on_its_own() -> None:
    """A pinned server's cores: their times alone, a part of the machine's; a core the
    machine does not have gives no reading rather than a wrong one."""
    first, machine = steal.read([0]), steal.read()  # the whole machine after its part
    assert machine is not None and first is not None
    assert 0.0 < first.total <= machine.total and first.steal <= machine.steal
    assert steal.read([10_000]) is None
