"""Fixtures of the lab tests: labs built with ``testbed lab up`` and always taken down.

Every test gets a state directory of its own (TESTBED_LAB_DIR), so the labs it
builds never meet a user's. A lab is removed at teardown with ``testbed lab
down``, also when the test failed; should that fail, the names its state file
records are removed one by one (never by pattern) and the test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.processes import READY_LINE, Endpoint, ManagedProcess
from tests.conftest import require_root

ROOT = Path(__file__).resolve().parents[2]
TESTBED = [sys.executable, "-m", "testbed"]


def run(argv: list[str], env: dict[str, str], *, input: bytes | None = None,
        timeout: float = 25) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=input.decode() if input else None, capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


class Lab:
    """One lab of a test: its name, its state file, commands run inside its hosts."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.started: list[ManagedProcess] = []

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(Path(self.env["TESTBED_LAB_DIR"], f"{self.name}.json").read_text())

    def lab(self, *args: str, timeout: float = 25) -> subprocess.CompletedProcess[str]:
        return run([*TESTBED, "lab", *args], self.env, timeout=timeout)

    def exec_argv(self, host: str, *argv: str) -> list[str]:
        return [*TESTBED, "lab", "exec", "--name", self.name, host, "--", *argv]

    def exec(self, host: str, *argv: str, input: bytes | None = None,
             timeout: float = 25) -> subprocess.CompletedProcess[str]:
        return run(self.exec_argv(host, *argv), self.env, input=input, timeout=timeout)

    def serve(self, host: str, *options: str) -> tuple[ManagedProcess, Endpoint]:
        """``testbed serve OPTIONS --port 0`` inside ``host``; its process and endpoint."""
        proc = ManagedProcess(self.exec_argv(host, sys.executable, "-m", "servers", *options,
                                             "--port", "0", "--quiet"), env=self.env, cwd=ROOT)
        self.started.append(proc)
        match = proc.wait_for_line(READY_LINE, 15)
        return proc, Endpoint.parse(match.group(0))  # type: ignore[return-value]

    def python(self, host: str, code: str, *args: str) -> ManagedProcess:
        proc = ManagedProcess(self.exec_argv(host, sys.executable, "-c", code, *args),
                              env=self.env, cwd=ROOT)
        self.started.append(proc)
        return proc

    def remove(self) -> None:
        for proc in self.started:
            proc.cleanup()
        path = Path(self.env["TESTBED_LAB_DIR"], f"{self.name}.json")
        if not path.exists():
            return
        recorded = self.state
        done = self.lab("down", "--name", self.name)
        if done.returncode == 0 and not path.exists():
            return
        for ns in recorded.get("namespaces", []):  # the recorded names only, never a pattern
            subprocess.run(["ip", "netns", "del", ns["name"]], capture_output=True, check=False)
        for file in recorded.get("files", []):
            Path(file).unlink(missing_ok=True)
        pytest.fail(f"testbed lab down --name {self.name} failed: {done.stderr}")


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the lab commands: root required, a state directory of the test's."""
    require_root()
    directory = tmp_path / "labs"
    monkeypatch.setenv("TESTBED_LAB_DIR", str(directory))
    return {**os.environ, "TESTBED_LAB_DIR": str(directory)}


@pytest.fixture
def make_lab(lab_env: dict[str, str]) -> Iterator[Any]:
    """``make_lab(*up_options)``: a Lab that is up; every one is taken down at teardown."""
    labs: list[Lab] = []

    def make(*options: str, name: str | None = None) -> Lab:
        lab = Lab(name or "t" + uuid.uuid4().hex[:8], lab_env)
        labs.append(lab)
        done = lab.lab("up", "--name", lab.name, *options)
        assert done.returncode == 0, done.stderr
        return lab

    yield make
    errors = []
    for lab in reversed(labs):
        try:
            lab.remove()
        except BaseException as exc:  # noqa: BLE001 - remove every lab, then report
            errors.append(exc)
    if errors:
        raise errors[0]


def netns_names() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def root_links() -> list[str]:
    done = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    # the interface lines without their counters-free state, which may change by itself
    return sorted(line.split(":")[1].strip() for line in done.stdout.splitlines())
