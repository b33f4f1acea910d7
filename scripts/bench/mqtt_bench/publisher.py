"""The sensors of scripts/bench/mqtt: N devices publishing JSON at R messages/s each
to a local broker, on one MQTT 3.1.1 connection written by hand (QoS 0: CONNECT,
then PUBLISH packets; no client library to install), topics fleet/dev<N>/telemetry,
payload {"t": <value>, "sent": <Unix seconds, float>}. The publish time is in the
payload, so whoever receives the value can tell how long it took.

Writes a JSON line per second to --stats: {"t", "published"}.
"""

import argparse
import json
import socket
import struct
import time


def remaining(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def packet(kind, body):
    return bytes([kind]) + remaining(len(body)) + body


def s(x: bytes):
    return struct.pack(">H", len(x)) + x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    sock = socket.create_connection(("127.0.0.1", a.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connect = s(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + s(b"bench-sensors")
    sock.sendall(packet(0x10, connect))
    sock.recv(4)  # CONNACK
    topics = [f"fleet/dev{i + 1}/telemetry".encode() for i in range(a.devices)]
    period = 1.0 / a.rate
    start = time.monotonic()
    published = 0
    last_stats = 0.0
    tick = 0
    with open(a.stats, "a") as st:
        while time.monotonic() - start < a.seconds:
            due = start + tick * period
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            # One message per device per tick, spread over the tick.
            for i, t in enumerate(topics):
                body = json.dumps({"t": (tick + i) % 1000 / 10, "sent": time.time()}).encode()
                sock.sendall(packet(0x30, s(t) + body))
                published += 1
            tick += 1
            if time.monotonic() - last_stats >= 1:
                last_stats = time.monotonic()
                st.write(json.dumps({"t": time.time(), "published": published}) + "\n")
                st.flush()
            # Keep-alive: a PINGREQ now and then.
            if tick % int(a.rate * 20) == 0:
                sock.sendall(b"\xc0\x00")


if __name__ == "__main__":
    main()
