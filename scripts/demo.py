#!/usr/bin/env python3
"""The main job, visible: a local LwM2M server (aiocoap, tests/lwm2m_server.py),
a Modbus/TCP temperature sensor (pymodbus, tests/modbus_sim.py) and `lwgate run`
with a demo configuration. Prints what the server sees: the registration, reads
of the gateway's objects, notifications, the sensor as an end device behind /25
(read and observed through its prefix), `lwgate status`, and the de-registration
on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lwm2m_formats import links, senml_json  # noqa: E402
from lwm2m_server import SENML_JSON, TestServer  # noqa: E402
from modbus_sim import ModbusSim  # noqa: E402

SENSOR = """[device]
id = "boiler-temp"
prefix = "boiler"
protocol = "modbus-tcp"
manufacturer = "ACME Sensors"
model = "T-100"

[modbus]
host = "127.0.0.1"
port = {port}
unit = 1
poll_ms = 500

[[modbus.point]]
path = "3303/0/5700"       # Temperature / Sensor Value
register = "holding-register"
address = 0
type = "f32"
"""

NAMES_3 = {0: "Manufacturer", 1: "Model Number", 2: "Serial Number", 3: "Firmware Version", 10: "Memory Free (KB)",
           11: "Error Code", 13: "Current Time", 14: "UTC Offset", 15: "Timezone", 16: "Supported Bindings",
           17: "Device Type", 18: "Hardware Version", 19: "Software Version", 21: "Memory Total (KB)"}
NAMES_4 = {0: "Network Bearer", 1: "Available Network Bearer", 4: "IP Addresses", 5: "Router IP Addresses"}


def show(title, values, names):
    print(f"\n== {title}")
    for path, v in sorted(values.items(), key=lambda kv: [int(x) for x in kv[0].strip("/").split("/")]):
        ids = [int(x) for x in path.strip("/").split("/")]
        name = names.get(ids[2], f"resource {ids[2]}")
        suffix = f"[{ids[3]}]" if len(ids) > 3 else ""
        print(f"  {path:<12} {name + suffix:<28} {v}")


def main():
    binary = ROOT / "target" / "debug" / "lwgate"
    work = Path(tempfile.mkdtemp(prefix="lwgate-demo."))
    srv = TestServer()
    sensor = ModbusSim(units=(1,))
    sensor.set_float(1, 0, 21.5)
    (work / "devices.d").mkdir()
    (work / "devices.d" / "boiler.toml").write_text(SENSOR.format(port=sensor.port))
    cfg = work / "lwgate.toml"
    cfg.write_text(
        f'[endpoint]\nname = "lwgate-demo"\n'
        f'[store]\npath = "{work}/state.db"\n[control]\nsocket = "{work}/control.sock"\n'
        f'[device]\nmanufacturer = "lwgate demo"\nmodel = "Linux gateway"\n'
        f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n'
        f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 60\n'
    )
    print(f"== LwM2M server (aiocoap) listening on {srv.uri}")
    print(f"== Modbus/TCP sensor (pymodbus) on 127.0.0.1:{sensor.port}, unit 1: temperature in holding registers 0-1")
    print(f"== starting: lwgate run --config {cfg}")
    log = open(work / "lwgate.log", "w")
    agent = subprocess.Popen([str(binary), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        reg = srv.wait_registered("lwgate-demo", timeout=30)
        print(f"\n== registered: ep={reg.query['ep']} lt={reg.query['lt']} lwm2m={reg.query['lwm2m']} "
              f"b={reg.query['b']} at /{reg.location}")
        print("   objects: " + " ".join(t for t, _ in links(reg.links)))
        show("Read /3/0 (Device)", senml_json(srv.read("lwgate-demo", "/3/0", accept=SENML_JSON).payload), NAMES_3)
        show("Read /4/0 (Connectivity Monitoring)",
             senml_json(srv.read("lwgate-demo", "/4/0", accept=SENML_JSON).payload), NAMES_4)
        srv.write_attributes("lwgate-demo", "/3/0/13", "pmin=1", "pmax=2")
        first, notes, cancel = srv.observe("lwgate-demo", "/3/0/13")
        print(f"\n== Observe /3/0/13 (Current Time): first value {first.payload.decode()}")
        srv.wait_for(lambda: len(notes) >= 3, 15, "notifications")
        for n in notes[:3]:
            print(f"   notification: {n.payload.decode()}")
        cancel()
        gw = senml_json(srv.read("lwgate-demo", "/25", accept=SENML_JSON).payload)
        print("\n== Read /25 (LwM2M Gateway): the end devices behind the gateway")
        for path, v in sorted(gw.items()):
            print(f"  {path:<12} {v}")
        deadline = time.monotonic() + 10
        while srv.read("lwgate-demo", "/boiler/3303/0/5700").code.is_successful() is False:
            if time.monotonic() > deadline:
                raise RuntimeError("the sensor's first poll never came")
            time.sleep(0.2)
        print("\n== Read /boiler/3303/0/5700 (the sensor's temperature, through its prefix): "
              + srv.read("lwgate-demo", "/boiler/3303/0/5700").payload.decode())
        first, notes, cancel = srv.observe("lwgate-demo", "/boiler/3303/0/5700")
        print(f"== Observe /boiler/3303/0/5700: first value {first.payload.decode()}; the sensor warms up")
        for t in (22.0, 22.5, 23.0):
            sensor.set_float(1, 0, t)
            srv.wait_for(lambda t=t: any(float(n.payload) == t for n in notes if not isinstance(n, Exception)), 10, "notification")
            print(f"   notification: {t}")
        cancel()
        print("\n== lwgate status")
        out = subprocess.run([str(binary), "status", "--config", str(cfg)], capture_output=True, text=True)
        print("   " + out.stdout.strip().replace("\n", "\n   "))
        print("\n== SIGTERM")
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=15)
        print(f"   lwgate exited with status {code}; server saw de-registration: {reg.deregistered}")
        return 0 if code == 0 and reg.deregistered else 1
    except Exception as e:  # noqa: BLE001 - show the agent's log on any failure
        print(f"demo failed: {e}\n--- lwgate log ---\n{(work / 'lwgate.log').read_text()}", file=sys.stderr)
        return 1
    finally:
        if agent.poll() is None:
            agent.kill()
        srv.close()
        sensor.stop()


if __name__ == "__main__":
    sys.exit(main())
