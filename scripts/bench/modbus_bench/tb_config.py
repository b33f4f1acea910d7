"""Writes a ThingsBoard IoT Gateway 3.8 config directory for scripts/bench/modbus:
tb_gateway.json (MQTT to the local mosquitto, one Modbus connector), modbus.json
(N Modbus/TCP slaves on 127.0.0.1, R holding registers each as separate 16-bit
timeseries, pollPeriod 1000 ms) and logs.json (the package's own, levels WARNING,
as lwgate runs at `warn`; the connector's own logLevel too). Run with the gateway's venv python (it copies the
package's default logs.json).
"""

import argparse
import json
from pathlib import Path

import thingsboard_gateway


def slave(i, port, registers):
    return {
        "name": f"dev{i}",
        "host": "127.0.0.1",
        "port": port,
        "type": "tcp",
        "method": "socket",
        "unitId": 1,
        "deviceName": f"dev{i}",
        "deviceType": "default",
        "timeout": 35,
        "byteOrder": "BIG",
        "wordOrder": "BIG",
        "retries": 3,
        "retryOnEmpty": True,
        "retryOnInvalid": True,
        "pollPeriod": 1000,
        "connectAttemptTimeMs": 5000,
        "connectAttemptCount": 5,
        "waitAfterFailedAttemptsMs": 300000,
        "attributes": [],
        "timeseries": [
            {"tag": f"r{k}", "type": "16uint", "functionCode": 3, "objectsCount": 1, "address": k}
            for k in range(registers)
        ],
        "attributeUpdates": [],
        "rpc": [],
    }


def gateway_config(pkg, mqtt_port, connector):
    """tb_gateway.json: ThingsBoard's MQTT API on the local mosquitto, no remote
    configuration, shell, statistics or gRPC, memory storage, one connector.
    Also used by scripts/bench/mqtt."""
    gw = json.loads((pkg / "tb_gateway.json").read_text())
    tb = gw["thingsboard"]
    tb["host"] = "127.0.0.1"
    tb["port"] = mqtt_port
    tb["security"] = {"type": "accessToken", "accessToken": "bench"}
    tb["remoteConfiguration"] = False
    tb["remoteShell"] = False
    tb["statistics"]["enable"] = False
    gw["grpc"]["enabled"] = False
    gw["storage"]["type"] = "memory"
    gw["connectors"] = [connector]
    return gw


def write_logs(pkg, d):
    """The package's logs.json at WARNING (lwgate runs at `warn`)."""
    logs = json.loads((pkg / "logs.json").read_text())
    for logger in logs.get("loggers", {}).values():
        logger["level"] = "WARNING"
    (d / "logs.json").write_text(json.dumps(logs, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--base-port", type=int, default=15001)
    ap.add_argument("--registers", type=int, default=10)
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    pkg = Path(thingsboard_gateway.__file__).parent / "config"

    gw = gateway_config(pkg, args.mqtt_port, {"type": "modbus", "name": "Modbus", "configuration": "modbus.json"})
    (d / "tb_gateway.json").write_text(json.dumps(gw, indent=2))

    modbus = {
        "name": "Modbus",
        "logLevel": "WARNING",
        "master": {
            "slaves": [slave(i + 1, args.base_port + i, args.registers) for i in range(args.devices)]
        }
    }
    (d / "modbus.json").write_text(json.dumps(modbus, indent=2))

    write_logs(pkg, d)


if __name__ == "__main__":
    main()
