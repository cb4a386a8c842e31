"""The tools' own safety: servers bind loopback by default; nothing runs a shell,
evaluates text or unpickles. The loopback guard of load/storm/compare is tested in
tests/test_safety.py; what is here is not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import psutil
import pytest

from servers.config import ServerConfig
from testbed.processes import start_server
from tests.resilience.conftest import MODELS, UDP_MODELS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("servers", "clients", "testbed", "loadtests", "tests")
#: modules that turn bytes or text into objects or commands
BANNED_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "jsonpickle"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_ATTRIBUTES = {("os", "system"), ("os", "popen"), ("pickle", "loads"), ("pickle", "load"),
                     ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def offences(path: Path, root: Path = ROOT) -> list[str]:
    """Every shell=True, eval/exec, os.system and pickle-like import in one source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                   and keyword.value.value is False):
                    found.append(f"{where}: shell=")
            func = node.func
            if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                found.append(f"{where}: {func.id}()")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and (func.value.id, func.attr) in BANNED_ATTRIBUTES:
                found.append(f"{where}: {func.value.id}.{func.attr}()")
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in BANNED_MODULES:
            found.append(f"{where}: from {node.module} import")
    return found


def test_the_scan_sees_the_project_and_catches_what_it_looks_for(tmp_path):
    assert len(sources()) > 20
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport subprocess, os\nsubprocess.run('ls', shell=True)\n"
                   "eval('1')\nos.system('ls')\n")
    assert len(offences(bad, root=tmp_path)) == 4


def test_no_shell_no_eval_no_pickle_anywhere():
    found = [offence for path in sources() for offence in offences(path)]
    assert found == []


def test_the_default_host_is_loopback():
    assert ServerConfig().host == "127.0.0.1"


def bound_addresses(pid: int, port: int, kind: str) -> set[str]:
    """The local addresses of every socket on ``port`` in the server's process tree."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        # psutil >= 6 names it net_connections, before that connections
        for conn in (getattr(proc, "net_connections", None) or proc.connections)(kind=kind):
            if conn.laddr and conn.laddr.port == port:
                found.add(conn.laddr.ip)
    return found


@pytest.mark.parametrize("model", MODELS)
def test_every_model_binds_loopback_by_default(model):
    server = start_server(["--model", model, "--quiet"])  # no --host
    try:
        assert server.host == "127.0.0.1"
        assert bound_addresses(server.pid, server.port, "tcp") == {"127.0.0.1"}
    finally:
        server.cleanup()


@pytest.mark.parametrize("model", UDP_MODELS)
def test_every_udp_model_binds_loopback_by_default(model):
    server = start_server(["--model", model, "--udp", "--quiet"])
    try:
        assert server.endpoint.url.startswith("udp://127.0.0.1:")
        assert bound_addresses(server.pid, server.port, "udp") == {"127.0.0.1"}
    finally:
        server.cleanup()
