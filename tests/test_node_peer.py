"""lwgate against lwm2m-node-lib 1.4.0 (npm), a third-party LwM2M server."""

import json
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import ROOT
from lwm2m_server import _free_udp_port

NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture
def node_peer():
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "lwm2m-node-lib").exists():
        pytest.fail("node and tests/node/node_modules are needed: scripts/setup installs them")
    port = _free_udp_port()
    proc = subprocess.Popen(
        ["node", "peer.js", str(port)], cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def next_line(timeout=30):
        while True:
            line = lines.get(timeout=timeout)
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue  # library chatter

    first = next_line()
    assert first == {"step": "listening", "error": None, "value": port}, first
    yield port, next_line
    proc.kill()
    proc.wait()


def test_lwm2m_node_lib_manages_lwgate(agent, node_peer):
    port, next_line = node_peer
    # lwm2m-node-lib 1.4.0 never acknowledges confirmable notifications (seen here:
    # the observation stalls), so this server gets them non-confirmable.
    a = agent(
        servers=f'[[server]]\nuri = "coap://127.0.0.1:{port}"\nssid = 1\nlifetime = 120\n'
        "confirmable_notifications = false\n"
    ).start()
    seen = {}
    events = []
    while "done" not in seen:
        msg = next_line(timeout=60)
        if "event" in msg:
            events.append(msg)
        else:
            seen[msg["step"]] = msg
            assert msg["error"] is None, msg
    reg = events[0]
    assert reg["event"] == "register" and reg["endpoint"] == "test-gw"
    assert reg["lifetime"] == "120" and reg["binding"] == "U"
    assert "</3/0>" in reg["payload"]
    assert seen["read /3/0/0"]["value"]  # manufacturer from DMI or "unknown"
    assert seen["read /1/0/2"]["value"] == "5"
    assert any(e["event"] == "update" for e in events), "execute /1/0/8 sends an Update"
    discovered = seen["discover /3/0"]["value"]
    assert "</3/0/0>" in discovered and "</3/0/4>" in discovered
    assert "pmin=1" in seen["discover /3/0/13"]["value"]
    # /3/0/13 is the current time (whole seconds): the notification node-lib hands
    # on after the value it returns for the observe (pmin 1 s, pmax 2 s) must carry
    # a genuinely later one, never the value the observation started with again.
    assert "notification /3/0/13" in seen, "no notification within 10 s of the observe"
    first = int(seen["observe /3/0/13"]["value"])
    later = int(seen["notification /3/0/13"]["value"])
    assert abs(first - time.time()) < 60, f"observed /3/0/13 = {first} is not the current time"
    assert first < later <= time.time() + 1, f"notification {later} is not newer than the first value {first}"
    a.proc.send_signal(signal.SIGTERM)
    while True:
        msg = next_line(timeout=30)
        if msg.get("event") == "unregister":
            break
    assert msg["endpoint"] == "test-gw"
    assert a.proc.wait(timeout=15) == 0
