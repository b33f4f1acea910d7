"""A UDP relay between lwgate and a test server that can drop every datagram, to
make a server unreachable without stopping it."""

import select
import socket
import threading
import time

from aiocoap import Code, Message


class Relay:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind((host, 0))
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind((host, 0))
        self.port = self.down.getsockname()[1]
        self.client = None
        self.drop = False
        self.dropped = 0
        self.forwarded = 0
        # (observe number, payload) of every 2.05 with Observe that went through to
        # the server: what reached it on the wire, whatever its CoAP stack then does.
        self.notifications = []
        # (time, direction, client address, summary) of every datagram: printed
        # when a test fails, to tell where a message went.
        self.trace = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def uri(self):
        return f"coap://127.0.0.1:{self.port}"

    def _run(self):
        while not self._stop:
            ready, _, _ = select.select([self.down, self.up], [], [], 0.1)
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError:
                    continue
                if sock is self.down:
                    self.client = addr
                m = _decode(data)
                self.trace.append((time.time(), "c>s" if sock is self.down else "s>c", self.client, self.drop, _summary(m, data)))
                if self.drop:
                    self.dropped += 1
                    continue
                self.forwarded += 1
                if sock is self.down:
                    if m is not None and m.code == Code.CONTENT and m.opt.observe is not None:
                        self.notifications.append((m.opt.observe, m.payload))
                    self.up.sendto(data, self.upstream)
                elif self.client is not None:
                    self.down.sendto(data, self.client)

    def dump(self, since=0.0):
        return "\n".join(
            f"{t:.3f} {d} {c[1] if c else None} {'DROP ' if dr else ''}{s}" for t, d, c, dr, s in self.trace if t >= since
        )

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.down.close()
        self.up.close()


def _decode(data):
    try:
        return Message.decode(data)
    except Exception:  # noqa: BLE001 - not ours to judge here
        return None


def _summary(m, data):
    if m is None:
        return f"undecodable {data[:8].hex()}"
    obs = f" obs={m.opt.observe}" if m.opt.observe is not None else ""
    path = "/".join(m.opt.uri_path)
    return f"{m.mtype} {m.code} mid={m.mid} tok={m.token.hex()}{obs} /{path} {len(m.payload)}B"
