"""``testbed lab``: up, exec, status, down leave nothing behind; labs side by side; crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import one_line
from tests.lab.conftest import ROOT, TESTBED, netns_names, root_links, run


def test_up_exec_status_down_leave_nothing_behind(make_lab):
    links_before = root_links()
    lab = make_lab("--hosts", "3")
    state = lab.state
    spaces = {ns["name"] for ns in state["namespaces"]}
    assert len(spaces) == 4 and spaces <= netns_names()
    assert root_links() == links_before, "the root namespace got an interface"

    done = lab.exec("h1", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    addresses = lab.exec("h2", "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert state["hosts"][1]["ipv4"] + "/24" in addresses
    assert state["hosts"][1]["ipv6"] + "/64" in addresses
    assert "state UNKNOWN" in lab.exec("h3", "ip", "-o", "link", "show", "lo").stdout \
        or "UP" in lab.exec("h3", "ip", "-o", "link", "show", "lo").stdout
    assert lab.exec("h1", "getent", "hosts", "h3").stdout.split()[0] in (
        state["hosts"][2]["ipv4"], state["hosts"][2]["ipv6"])

    status = lab.lab("status", "--name", lab.name)
    assert status.returncode == 0 and f"lab {lab.name}: up" in status.stdout
    for host in state["hosts"]:
        assert host["ipv4"] in status.stdout and host["namespace"] in status.stdout

    files = [Path(f) for f in state["files"]]
    assert files and all(f.exists() for f in files)
    down = lab.lab("down", "--name", lab.name)
    assert down.returncode == 0, down.stderr
    assert not spaces & netns_names()
    assert root_links() == links_before
    assert not any(f.exists() for f in files)
    assert not Path(lab.env["TESTBED_LAB_DIR"], f"{lab.name}.json").exists()
    again = lab.lab("down", "--name", lab.name)
    assert again.returncode == 0 and "is down" in again.stdout


def test_two_labs_side_by_side_do_not_clash(make_lab):
    first, second = make_lab("--hosts", "2"), make_lab("--hosts", "2")
    a, b = first.state, second.state
    assert a["ipv4"] != b["ipv4"] and a["ipv6"] != b["ipv6"]
    assert not {n["name"] for n in a["namespaces"]} & {n["name"] for n in b["namespaces"]}
    for lab in (first, second):
        other = lab.state["hosts"][1]["ipv4"]
        assert lab.exec("h1", "ping", "-c", "1", "-W", "2", "h2").returncode == 0
        assert other in lab.exec("h1", "getent", "ahostsv4", "h2").stdout
    # one lab's hosts have no route to the other's
    unreachable = first.exec("h1", "ping", "-c", "1", "-W", "1", b["hosts"][1]["ipv4"])
    assert unreachable.returncode != 0
    assert first.lab("down", "--name", first.name).returncode == 0
    status = second.lab("status", "--json")
    assert '"up": true' in status.stdout and first.name not in status.stdout
    assert second.exec("h1", "ping", "-c", "1", "-W", "2", "h2").returncode == 0


def test_down_after_the_holder_was_killed_removes_everything(make_lab):
    links_before = root_links()
    lab = make_lab()
    spaces = {ns["name"] for ns in lab.state["namespaces"]}
    server, _ = lab.serve("h2", "--model", "threading", "--host", "0.0.0.0")
    holder = server.pid  # `testbed lab exec`, which recorded the server's pid
    recorded = lab.state["processes"]
    assert len(recorded) == 1 and recorded[0]["host"] == "h2"
    served_by = recorded[0]["pid"]
    os.kill(holder, signal.SIGKILL)
    server.popen.wait(10)
    assert psutil.pid_exists(served_by), "the server should outlive its holder"
    done = lab.lab("down", "--name", lab.name)
    assert done.returncode == 0, done.stderr
    assert not psutil.pid_exists(served_by) or psutil.Process(served_by).status() == "zombie"
    assert not spaces & netns_names() and root_links() == links_before


def test_a_stray_process_in_a_host_is_stopped_by_down(make_lab):
    """A process started with plain ``ip netns exec`` is found by its namespace, not its name."""
    lab = make_lab("--hosts", "1")
    ns = lab.state["hosts"][0]["namespace"]
    stray = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"], start_new_session=True)
    try:
        assert lab.lab("down", "--name", lab.name).returncode == 0
        assert stray.wait(10) == -signal.SIGTERM
        assert ns not in netns_names()
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_a_lab_host_cannot_reach_the_root_namespace(make_lab):
    lab = make_lab("--hosts", "1")
    outside = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
               if a.family in (2, 10) and not a.address.startswith(("127.", "::1", "fe80"))]
    assert outside, "this machine has no address beyond loopback to try"
    code = ("import socket, sys\n"
            "for a in sys.argv[1:]:\n"
            "    s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET)\n"
            "    s.settimeout(2)\n"
            "    try:\n"
            "        s.connect((a, 22)); print('reached', a)\n"
            "    except OSError as e:\n"
            "        print('unreachable', a, e.errno)\n")
    done = lab.exec("h1", sys.executable, "-c", code, *outside)
    assert done.returncode == 0, done.stderr
    assert "reached" not in done.stdout.replace("unreachable", "")
    assert done.stdout.count("unreachable") == len(outside)


def test_the_guard_accepts_a_lab_address_only_inside_a_lab_that_is_up(make_lab, lab_env):
    lab = make_lab("--hosts", "2")
    check = ("import sys\nfrom clients.safety import UnsafeTarget, ensure_allowed\n"
             "try:\n    ensure_allowed(sys.argv[1]); print('allowed')\n"
             "except UnsafeTarget as e:\n    print('refused:', e)\n")
    address = lab.state["hosts"][1]["ipv4"]
    assert lab.exec("h1", sys.executable, "-c", check, "h2").stdout == "allowed\n"
    assert lab.exec("h1", sys.executable, "-c", check, address).stdout == "allowed\n"
    outside = run([sys.executable, "-c", check, address], lab_env).stdout
    assert outside.startswith("refused:") and f"lab {lab.name}" in outside
    ns = lab.state["hosts"][0]["namespace"]
    assert lab.lab("down", "--name", lab.name).returncode == 0
    # the lab is gone: the same address from a fresh namespace is refused
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        after = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", check, address],
                               capture_output=True, text=True, env=lab_env, cwd=ROOT, timeout=20)
        assert after.stdout.startswith("refused:"), after.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.mark.parametrize("args, expected", [
    (["up", "--name", "Bad-Name"], "not a lab name"),
    (["up", "--hosts", "0"], "--hosts must be"),
    (["up", "--rate", "fast"], "not a rate"),
    (["up", "--loss", "h9=1%", "--hosts", "2"], "no host h9"),
    (["up", "--loss", "150%"], "not a loss"),
    (["exec", "--name", "nolab", "h1", "--", "true"], "is not up"),
    (["exec", "h1"], "give a command"),
])
def test_bad_input_is_one_line(lab_env, args, expected):
    done = run([*TESTBED, "lab", *args], lab_env)
    assert done.returncode in (1, 2)
    assert expected in one_line(done.stderr)
    labs = Path(lab_env["TESTBED_LAB_DIR"])
    assert not labs.exists() or not list(labs.glob("*.json")), "a refused lab left a state file"


def test_an_unknown_host_is_a_usage_error(make_lab):
    lab = make_lab("--hosts", "2")
    done = lab.exec("h7", "true")
    assert done.returncode == 2 and "no host 'h7'" in one_line(done.stderr)


@pytest.mark.parametrize("command", [["up"], ["down"], ["status"], ["exec", "h1", "--", "true"]])
def test_without_privileges_every_command_says_so_and_exits_2(lab_env, command):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    done = run([setpriv, "--bounding-set", "-net_admin,-sys_admin", *TESTBED, "lab", *command],
               lab_env)
    assert done.returncode == 2
    assert "needs root" in one_line(done.stderr)


def test_down_cleans_up_after_up_was_killed_half_way(lab_env):
    links_before = root_links()
    state_file = Path(lab_env["TESTBED_LAB_DIR"], "thalf.json")
    up = subprocess.Popen([*TESTBED, "lab", "up", "--name", "thalf", "--hosts", "60"],
                          env=lab_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and up.poll() is None:
            try:
                if len(json.loads(state_file.read_text())["namespaces"]) >= 5:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        up.kill()
        up.wait()
        state = json.loads(state_file.read_text())
        assert state["status"] == "building", "up finished before it could be killed"
        made = {ns["name"] for ns in state["namespaces"]}
        assert made & netns_names()
        done = run([*TESTBED, "lab", "down", "--name", "thalf"], lab_env)
        assert done.returncode == 0, done.stderr
        assert not made & netns_names() and root_links() == links_before
        assert not state_file.exists()
        assert not any(Path(f).exists() for f in state["files"])
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if state_file.exists():
            run([*TESTBED, "lab", "down", "--name", "thalf"], lab_env)


@pytest.mark.parametrize("command", [[], ["up"], ["exec"], ["status"], ["down"]])
def test_help_needs_no_privileges(command):
    done = subprocess.run([*TESTBED, "lab", *command, "--help"], capture_output=True, text=True,
                          timeout=20, cwd=ROOT)
    assert done.returncode == 0 and "usage: testbed lab" in done.stdout, done.stderr
