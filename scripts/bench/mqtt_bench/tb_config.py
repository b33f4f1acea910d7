"""Writes a ThingsBoard IoT Gateway 3.8 config directory for scripts/bench/mqtt:
tb_gateway.json (its upstream MQTT to the local mosquitto, one MQTT connector),
mqtt.json (the same broker, topic filter fleet/+/telemetry, the device name from
the topic, timeseries t and sent) and logs.json at WARNING. Run with the gateway's
venv python.
"""

import argparse
import json
import sys
from pathlib import Path

import thingsboard_gateway

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "modbus_bench"))
from tb_config import gateway_config, write_logs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    pkg = Path(thingsboard_gateway.__file__).parent / "config"
    gw = gateway_config(pkg, args.mqtt_port, {"type": "mqtt", "name": "MQTT", "configuration": "mqtt.json"})
    (d / "tb_gateway.json").write_text(json.dumps(gw, indent=2))
    mqtt = {
        "name": "MQTT",
        "logLevel": "WARNING",
        "broker": {
            "host": "127.0.0.1",
            "port": args.mqtt_port,
            "clientId": "tb-bench-connector",
            "version": 5,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 100,
            "sendDataOnlyOnChange": False,
            "security": {"type": "anonymous"},
        },
        "mapping": [
            {
                "topicFilter": "fleet/+/telemetry",
                "subscriptionQos": 0,
                "converter": {
                    "type": "json",
                    "deviceInfo": {
                        "deviceNameExpressionSource": "topic",
                        "deviceNameExpression": "(?<=fleet/)(.*?)(?=/telemetry)",
                        "deviceProfileExpressionSource": "constant",
                        "deviceProfileExpression": "default",
                    },
                    "sendDataOnlyOnChange": False,
                    "timeout": 60000,
                    "attributes": [],
                    "timeseries": [
                        {"type": "double", "key": "t", "value": "${t}"},
                        {"type": "double", "key": "sent", "value": "${sent}"},
                    ],
                },
            }
        ],
        "requestsMapping": {},
    }
    (d / "mqtt.json").write_text(json.dumps(mqtt, indent=2))
    write_logs(pkg, d)


if __name__ == "__main__":
    main()
