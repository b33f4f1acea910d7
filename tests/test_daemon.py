"""`lwgate run` as a black box: status over the control socket, signals, sd_notify."""

import json
import os
import signal
import socket
import time

import pytest


def test_status_json_and_clean_sigterm(agent):
    a = agent().start()
    st = a.status_json()
    assert st["endpoint"] == "test-gw"
    assert st["pid"] == a.proc.pid
    assert st["store"]["schema_version"] >= 1
    assert st["servers"][0]["ssid"] == 101
    assert st["servers"][0]["uri"] == "coap://127.0.0.1:5683"
    assert st["servers"][0]["state"]
    assert a.stop(signal.SIGTERM) == 0
    assert not a.socket.exists(), "control socket left behind"
    assert "SIGTERM: shutting down" in a.log.read_text()


def test_sigint_also_exits_zero(agent):
    a = agent().start()
    assert a.stop(signal.SIGINT) == 0


def test_human_status(agent):
    a = agent().start()
    out = a.cli("status", "--config", str(a.config)).stdout
    assert "endpoint: test-gw" in out
    assert "[101] coap://127.0.0.1:5683" in out
    a.stop()


def test_status_without_daemon_explains(agent):
    a = agent()
    r = a.cli("status", "--config", str(a.config), check=False)
    assert r.returncode == 1
    assert str(a.socket) in r.stderr and "is lwgate running" in r.stderr


def test_starts_are_counted_across_restarts(agent):
    a = agent().start()
    assert a.status_json()["starts"] == 1
    assert a.stop() == 0
    a.start()
    assert a.status_json()["starts"] == 2
    assert a.stop() == 0


def test_restart_after_kill_9_replaces_stale_socket(agent):
    a = agent().start()
    a.proc.kill()
    a.proc.wait()
    assert a.socket.exists()
    a.start()
    assert a.status_json()["pid"] == a.proc.pid
    assert a.stop() == 0


def test_second_instance_refuses_the_live_socket(agent, lwgate):
    import subprocess

    a = agent().start()
    r = subprocess.run(
        [str(lwgate), "run", "--config", str(a.config)], capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 1
    assert "another lwgate is already running" in r.stderr
    assert a.status_json()["pid"] == a.proc.pid
    assert a.stop() == 0


def test_invalid_config_refuses_to_start(agent):
    a = agent(extra='[log]\nlevel = "loud"\n')
    a.config.write_text(a.config.read_text().replace('[log]\nlevel = "debug"\n', ""))
    r = a.cli("run", "--config", str(a.config), check=False)
    assert r.returncode == 1
    assert f"{a.config}" in r.stderr and "log.level" in r.stderr


def test_sighup_reloads_devices_and_keeps_them_on_a_broken_file(agent):
    a = agent().start()
    assert a.status_json()["devices"] == []
    # A Modbus device on a closed port: it is started (and reported down).
    (a.devices / "pump.toml").write_text(
        '[device]\nid = "pump"\nprotocol = "modbus-tcp"\n'
        '[modbus]\nhost = "127.0.0.1"\nport = 9\nunit = 1\n'
        '[[modbus.point]]\npath = "3303/0/5700"\nregister = "holding-register"\naddress = 0\ntype = "i16"\n'
    )
    a.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not a.status_json()["devices"]:
        time.sleep(0.05)
    devs = a.status_json()["devices"]
    assert [(d["id"], d["prefix"], d["protocol"]) for d in devs] == [("pump", "pump", "modbus-tcp")]

    (a.devices / "bad.toml").write_text('[device]\nid = "x"\nprotocol = "telnet"\n')
    a.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "reload of devices.d rejected" not in a.log.read_text():
        time.sleep(0.05)
    log = a.log.read_text()
    assert "reload of devices.d rejected" in log and "bad.toml" in log
    assert [d["id"] for d in a.status_json()["devices"]] == ["pump"]
    assert a.stop() == 0


def test_unknown_control_request_gets_an_error_object(agent):
    a = agent().start()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(a.socket))
        s.sendall(b"format c:\n")
        reply = s.makefile().readline()
    assert "error" in json.loads(reply)
    assert a.status_json()["pid"] == a.proc.pid
    assert a.stop() == 0


def test_control_socket_is_not_world_accessible(agent):
    a = agent().start()
    assert oct(os.stat(a.socket).st_mode & 0o777) == "0o660"
    assert a.stop() == 0


def test_sd_notify_ready_watchdog_and_stopping(agent, tmp_path):
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(10)
    a = agent()
    a.start(env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}, wait=False)
    messages = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            msg = srv.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no notification; got {messages}; log: {a.log.read_text()}")
        messages.append(msg)
        if sum("WATCHDOG=1" in m for m in messages) >= 2:
            break
    assert any("READY=1" in m for m in messages), messages
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=endpoint test-gw" in ready
    assert sum("WATCHDOG=1" in m for m in messages) >= 2, messages
    a.wait_ready()
    a.proc.send_signal(signal.SIGTERM)
    saw_stopping = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not saw_stopping:
        saw_stopping = "STOPPING=1" in srv.recv(4096).decode()
    assert saw_stopping
    assert a.proc.wait(timeout=10) == 0
    srv.close()
