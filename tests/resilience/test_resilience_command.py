"""``testbed resilience`` as a user meets it: the table, the exit status, bad options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import no_traceback, one_line


def run(*args: str, timeout: float = 25) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed", "resilience", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_help_names_the_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--models", "--checks", "--full"):
        assert option in result.stdout


@pytest.mark.parametrize(("args", "word"), [
    (["--models", "nope"], "nope"),
    (["--checks", "nope"], "nope"),
    (["--bogus"], "--bogus"),
])
def test_bad_options_get_one_line_and_status_2(args, word):
    result = run(*args)
    assert result.returncode == 2
    assert word in one_line(result.stderr)


def test_prints_figures_per_model_and_exits_0_when_all_hold():
    result = run("--models", "select", "threading", "--checks", "integrity", "bad-input")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "reduced form" in out
    header = next(line for line in out.splitlines() if line.startswith("model "))
    for column in ("exchanges", "bytes verified", "lost", "faults survived", "denied", "problems"):
        assert column in header
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("select", "threading")}
    for model in ("select", "threading"):
        row = rows[model]
        assert int(row[1]) > 0  # exchanges verified
        assert row[-1] == "0"  # problems
    assert "FAIL" not in out
    no_traceback(result.stderr)
