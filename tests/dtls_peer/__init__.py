"""The GnuTLS DTLS relay (dtls_relay.c beside this file) for tests.

`DtlsPeer(upstream_port, psk={...})` builds the relay if needed (make), starts
it in front of a plain-UDP CoAP server (e.g. `tests/lwm2m_server.TestServer`)
and reads its event lines: `peer.uri` is the coaps:// URI to give a client,
`peer.events` every event so far (dicts, in order), `peer.wait_event(...)`
waits for one. Each DTLS client gets its own upstream socket: the handshake
event's `upstream_port` is the port the CoAP server sees that client on.

    with DtlsPeer(srv.port, psk={"ep1": b"secret"}, priority="-KX-ALL:+PSK") as peer:
        ...  # client connects to peer.uri
        hs = peer.wait_event("handshake", ok=True)
        assert srv.wait_registered("ep1").remote.sockaddr[1] == hs["upstream_port"]

Faults at run time: `peer.drop(n)`, `peer.blackout(seconds)`, `peer.forget()`
(associations lost, resumption state kept), `peer.restart()` (everything lost,
as a restarted server), `peer.close_all()` (close_notify to every client).
"""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
_built = {}
_build_lock = threading.Lock()


def build(asan: bool = False) -> Path:
    """Builds the relay (both variants) once per test run; fails loudly when the
    compiler or GnuTLS's headers are missing."""
    with _build_lock:
        if not _built:
            try:
                r = subprocess.run(["make", "-s", "-C", str(HERE), "all"], capture_output=True, text=True, timeout=300)
            except FileNotFoundError as e:
                raise AssertionError(f"cannot build the DTLS relay: {e} (apt-get install make gcc libgnutls28-dev)")
            if r.returncode != 0:
                raise AssertionError(
                    "building the DTLS relay failed (needs gcc, make, libgnutls28-dev):\n" + r.stdout + r.stderr
                )
            _built["done"] = True
    return BUILD / ("dtls_relay-asan" if asan else "dtls_relay")


class DtlsPeer:
    __test__ = False

    def __init__(
        self,
        upstream_port,
        *,
        upstream_host="127.0.0.1",
        listen="127.0.0.1:0",
        psk=None,
        cert=None,
        key=None,
        ca=None,
        rpk_pub=None,
        rpk_key=None,
        rpk_clients=(),
        client_cert=None,
        priority=None,
        cookies=True,
        tickets=True,
        cache=True,
        lenient=False,
        drop_first=0,
        drop_first_out=0,
        blackout=None,
        idle=None,
        handshake_timeout=None,
        mtu=None,
        debug=None,
        asan=False,
        extra=(),
    ):
        """psk: {identity (str or bytes): key (bytes)}; cert/key/ca/rpk_*: PEM
        file paths; blackout: (at, for) seconds after start; the rest as the
        relay's options of the same name (README.md)."""
        binary = build(asan)
        args = [str(binary), "--upstream", f"{upstream_host}:{upstream_port}", "--listen", listen]
        for ident, k in (psk or {}).items():
            ident = ident.decode() if isinstance(ident, bytes) else ident
            args += ["--psk", f"{ident}:{k.hex()}"]
        for opt, val in (
            ("--cert", cert),
            ("--key", key),
            ("--ca", ca),
            ("--rpk-pub", rpk_pub),
            ("--rpk-key", rpk_key),
            ("--client-cert", client_cert),
            ("--priority", priority),
            ("--drop-first", drop_first or None),
            ("--drop-first-out", drop_first_out or None),
            ("--idle", idle),
            ("--handshake-timeout", handshake_timeout),
            ("--mtu", mtu),
            ("--debug", debug),
        ):
            if val is not None:
                args += [opt, str(val)]
        for k in rpk_clients:
            args += ["--rpk-client", str(k)]
        if blackout is not None:
            args += ["--blackout", f"{blackout[0]}:{blackout[1]}"]
        args += [flag for flag, on in (("--no-cookie", not cookies), ("--no-tickets", not tickets),
                                       ("--no-cache", not cache), ("--lenient", lenient)) if on]
        args += list(extra)
        self.args = args
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        env = dict(os.environ)
        if asan:
            # Any finding ends the relay at once with a report on stderr.
            env["ASAN_OPTIONS"] = "abort_on_error=0:halt_on_error=1:detect_leaks=0"
            env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        ev = self.wait_event("listening", timeout=10)
        self.port = ev["port"]
        self.host = listen.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def uri(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"coaps://{host}:{self.port}"

    def _read_stdout(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "unparsable", "line": line}
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exited"})
            self._cond.notify_all()

    def _read_stderr(self):
        for line in self.proc.stderr:
            with self._cond:
                self.stderr.append(line)

    def find(self, event=None, since=0, **fields):
        """The events so far named `event` whose fields equal `fields`, from
        index `since` on."""
        with self._cond:
            return [
                e
                for e in self.events[since:]
                if (event is None or e.get("event") == event) and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_event(self, event=None, timeout=30.0, since=0, **fields):
        """Waits for an event named `event` with the given field values (from
        index `since` of `events` on); returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.find(event, since, **fields)
                if found:
                    return found[0]
                if any(e["event"] == "exited" for e in self.events):
                    raise AssertionError(f"DTLS relay exited ({self.proc.poll()}) before {event} {fields}: {self.dump()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {event} {fields}; relay events:\n{self.dump()}")
                self._cond.wait(min(left, 0.2))

    def mark(self) -> int:
        """The index of the next event (for `since=`)."""
        with self._cond:
            return len(self.events)

    def dump(self):
        with self._cond:
            return "\n".join(json.dumps(e) for e in self.events) + "\n" + "".join(self.stderr[-50:])

    def command(self, line, timeout=10.0):
        """Sends a stdin command; returns once the relay has acted on it."""
        since = self.mark()
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ev = self.wait_event("command", timeout=timeout, since=since)
        if not ev.get("ok"):
            raise AssertionError(f"relay refused command {line!r}")
        return ev

    def drop(self, n):
        """Drops the next `n` datagrams from clients."""
        self.command(f"drop {n}")

    def blackout(self, seconds):
        """Drops every datagram, both ways, for `seconds` from now."""
        self.command(f"blackout {seconds}")

    def forget(self):
        self.command("forget")

    def restart(self):
        self.command("restart")

    def close_all(self):
        self.command("close")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
