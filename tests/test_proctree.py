"""The process-tree walk the load sampler and the bench's memory readings share: how a
zombie child and a root gone are counted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from testbed.bench.memory import holdings
from testbed.proctree import read_tree
from testbed.sampling import sample_tree

#: A parent with one live child (blocked on a pipe until the parent dies) and one child
#: that has exited and is never reaped; it prints both pids once the dead one is a zombie.
TREE = r"""
import os, sys, time
r, w = os.pipe()
live = os.fork()
if live == 0:
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
dead = os.fork()
if dead == 0:
    os._exit(0)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    with open(f"/proc/{dead}/stat") as stat:
        if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
            break
    time.sleep(0.01)
print(live, dead, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen, int, int]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        live, dead = (int(pid) for pid in proc.stdout.readline().split())
        yield proc, live, dead
    finally:
        proc.kill()  # its live child reads EOF then, and exits; init reaps both children
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()


def test_a_zombie_counts_as_a_process_holding_nothing(tree):
    proc, live, dead = tree
    root = psutil.Process(proc.pid)
    assert psutil.Process(dead).status() == psutil.STATUS_ZOMBIE
    reading = read_tree(root, uss=True)
    assert reading is not None and reading.processes == 3
    # psutil says a zombie has one thread; it runs none: two single-threaded live processes
    assert reading.threads == 2
    assert reading.uss is not None and 0 < reading.uss <= reading.rss
    assert read_tree(root).uss is None  # the sampler's walk does not pay for smaps
    sample, held = sample_tree(root), holdings(root)
    assert sample is not None and held is not None
    assert (sample.processes, sample.threads) == (held.processes, held.threads) == (3, 2)
    assert held.figure == "uss" and held.bytes == held.uss


def test_the_root_gone_reads_as_none(tree):
    proc, _, _ = tree
    root = psutil.Process(proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    assert read_tree(root) is None
    assert sample_tree(root) is None and holdings(root) is None


#: A parent that forks ten children, each blocked on a pipe; on a line from stdin, every
#: child burns about 35 ms of CPU, reports its own CPU clock since the fork
#: (CLOCK_PROCESS_CPUTIME_ID, to the nanosecond) and blocks again, and the parent prints
#: the children's sum and its own CPU clock.
BURNERS = r"""
import os, sys, time
CHILDREN = 10
go_r, go_w = os.pipe()
done_r, done_w = os.pipe()
for _ in range(CHILDREN):
    if os.fork() == 0:
        os.close(go_w)
        os.read(go_r, 1)
        end = time.process_time() + 0.035
        while time.process_time() < end:
            pass
        os.write(done_w, f"{time.process_time():.9f}\n".encode())
        os.read(go_r, 1)  # EOF once the parent is gone
        os._exit(0)
print(f"ready {time.process_time():.9f}", flush=True)
sys.stdin.readline()
os.write(go_w, b"x" * CHILDREN)
got = b""
while got.count(b"\n") < CHILDREN:
    got += os.read(done_r, 4096)
print(sum(float(line) for line in got.split()), f"{time.process_time():.9f}", flush=True)
sys.stdin.read()
"""


def test_young_processes_cpu_is_counted_to_the_tick_and_below():
    # /proc/PID/stat rounds each process's user and system time down to 10 ms ticks; a
    # child forked just before the first reading has nothing to round then, and a
    # fraction of a tick in each at the second: ten such children lost 50-100 ms of
    # their 350 ms here before the run time (schedstat) was read as well
    proc = subprocess.Popen([sys.executable, "-c", BURNERS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        word, parent_before = proc.stdout.readline().split()
        assert word == "ready"
        root = psutil.Process(proc.pid)
        before = read_tree(root)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        children, parent_after = (float(value) for value in proc.stdout.readline().split())
        after = read_tree(root)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()
    assert before is not None and after is not None and after.processes == 11
    burnt = children + float(parent_after) - float(parent_before)
    assert children > 0.3
    # what the children ran before the first reading (a blocked read) is well under 1 ms
    assert after.cpu_s - before.cpu_s == pytest.approx(burnt, rel=0.02, abs=0.003)
