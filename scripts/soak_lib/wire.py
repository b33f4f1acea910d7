"""A UDP relay between lwgate and the test server that can cut the link (every
datagram dropped, both ways) and records every datagram it forwards or drops,
with its time: "arrived at the server" is what crossed the relay to it. lwgate
gets a new source port at each restart; the relay forwards from one socket, so
the server sees one peer throughout, as it would behind a NAT."""

import select
import socket
import threading
import time


class Relay:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind((host, 0))
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind((host, 0))
        self.port = self.down.getsockname()[1]
        self.client = None
        self.cut = False
        # (time, "c>s" | "s>c", dropped, bytes)
        self.log: list[tuple[float, str, bool, bytes]] = []
        self._lock = threading.Lock()
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
                up = sock is self.down
                if up:
                    self.client = addr
                cut = self.cut
                with self._lock:
                    self.log.append((time.time(), "c>s" if up else "s>c", cut, data))
                if cut:
                    continue
                try:
                    if up:
                        self.up.sendto(data, self.upstream)
                    elif self.client is not None:
                        self.down.sendto(data, self.client)
                except OSError:
                    pass

    def upstream_datagrams(self):
        """(time, bytes) of every datagram that reached the server."""
        with self._lock:
            return [(t, d) for t, way, cut, d in self.log if way == "c>s" and not cut]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.down.close()
        self.up.close()
