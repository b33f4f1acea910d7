"""A test LwM2M server on aiocoap, an independent CoAP stack.

It accepts registrations on /rd and drives the registered client with real
requests (read, write, execute, discover, create, delete, observe, composite,
and deliberately malformed ones). aiocoap runs in its own thread with its own
event loop; every public method is synchronous, for plain pytest tests.

The registration interface is as strict as a real server's (Leshan): a
registration lives for its lifetime (`lt`, default 86400 s) plus `grace` seconds
after the Register or the last Update, then expires; a second Register from the
same endpoint replaces the first; an Update or a De-register on a location that
is unknown, de-registered, expired or replaced gets 4.04. What happened is
recorded for tests to assert on:

- `registrations[ep]`: the endpoint's latest `Registration`; `reg.live`, `reg.ended`
  ("deregistered", "expired", "replaced", "forgotten" (`forget(ep)`) or None) tell
  its state;
- `live()`: the live registrations (e.g. `assert len(srv.live()) == 1`);
- `deregisters`: every De-register request received, known location or not
  (`DeRegister(location, ep, code, at)`), e.g. `srv.deregistered_from(reg.location)`;
- `rejected`: every Update/De-register answered 4.04 (`(kind, location, at)`);
- `events`: ("register" | "update" | "deregister" | "expired" | "replaced" |
  "forgotten" | "update-unknown" | "deregister-unknown" | "deregister-unanswered" |
  "vanished" | "bootstrap-request" | "send", ...).

A server that disappears (crash, network cut with the port closed): `vanish()`
closes its socket at once, without a word to the client; datagrams to its port
then get ICMP port unreachable. `TestServer(vanish_on_deregister=True)` does the
same the moment the first De-register arrives, after recording it and without
answering it (a server that goes away while lwgate shuts down).
"""

import asyncio
import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field

import aiocoap
import aiocoap.interfaces
from aiocoap import Code, Message
from aiocoap.numbers.types import Type

# Content-Format numbers (LwM2M 1.1 TS 7.1.0 / IANA)
TEXT, LINK, OPAQUE, SENML_JSON, SENML_CBOR, TLV, LWM2M_JSON = 0, 40, 42, 110, 112, 11542, 11543


DEFAULT_LIFETIME = 86400  # LwM2M: Lifetime when the Register has no `lt`


@dataclass
class Registration:
    location: str
    ep: str
    query: dict
    links: str
    remote: object
    updates: list = field(default_factory=list)
    deregistered: bool = False
    # Monotonic time of the Register or the last accepted Update.
    refreshed: float = field(default_factory=time.monotonic)
    # Why it is no longer live: "deregistered", "expired", "replaced"; None while live.
    ended: str | None = None

    @property
    def lifetime(self) -> int:
        try:
            return int(self.query.get("lt", DEFAULT_LIFETIME))
        except ValueError:
            return DEFAULT_LIFETIME

    @property
    def live(self) -> bool:
        return self.ended is None


@dataclass
class DeRegister:
    """A De-register request as received (`code`: what it was answered, None if not)."""

    location: str
    ep: str | None
    code: object
    at: float


_VANISH = object()  # _handle's "close the socket instead of answering"


class _RD(aiocoap.interfaces.Resource):
    def __init__(self, server):
        super().__init__()
        self.server = server

    async def needs_blockwise_assembly(self, request):
        return True

    async def render(self, request):
        response = self.server._handle(request)
        if response is _VANISH:
            # Gone before any answer can leave: the response below is never sent.
            self.server._silence()
            asyncio.ensure_future(self.server.ctx.shutdown())
            return Message(code=Code.DELETED)
        return response


class TestServer:
    __test__ = False  # not a pytest test class

    def __init__(self, host="127.0.0.1", port=0, register_code=None, grace=2.0, vanish_on_deregister=False):
        self.host = host
        self.port = port
        # Latest registration of each endpoint (live or not); every one by location.
        self.registrations: dict[str, Registration] = {}
        self.by_location: dict[str, Registration] = {}
        self.grace = grace  # seconds a registration outlives its lifetime
        self.vanish_on_deregister = vanish_on_deregister
        self.vanished = False
        self.deregisters: list[DeRegister] = []
        self.rejected: list = []
        self.events: list = []
        self.register_code = register_code  # e.g. Code.PRECONDITION_FAILED to refuse
        self.refused: list = []
        self.sent: list = []
        self._observations: list = []
        self.bs_clients: dict = {}
        self.bs_queries: list = []
        # Files served by GET (path -> bytes), as a server that hands out CoAP
        # Package URIs of its own does (aiocoap answers them block-wise).
        self.files: dict = {}
        self.file_gets = 0
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        # Port 0: the kernel picks a free port at bind time, so parallel test runs
        # cannot race for it; UDP only, so there is one port to read back.
        self.ctx = self._call(
            aiocoap.Context.create_server_context(_RD(self), bind=(self.host, self.port), transports=["udp6"])
        )
        if not self.port:
            transport = self.ctx.request_interfaces[0].token_interface.message_interface.transport
            self.port = transport.get_extra_info("socket").getsockname()[1]
        # (monotonic time, sender sockaddr, bytes) of every datagram received, before
        # aiocoap judges it (it drops, say, a Reset it cannot match to an exchange).
        self.wire: list = []
        interface = self.ctx.request_interfaces[0].token_interface.message_interface
        received = interface.datagram_msg_received

        def tap(data, ancdata, flags, address):
            with self._cond:
                self.wire.append((time.monotonic(), address, bytes(data)))
            return received(data, ancdata, flags, address)

        interface.datagram_msg_received = tap

    @property
    def uri(self):
        return f"coap://{self.host}:{self.port}"

    # ---- plumbing -------------------------------------------------------

    def _call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self):
        try:
            if not self.vanished:
                self._call(self.ctx.shutdown(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def vanish(self):
        """Stops the server abruptly: its socket is closed at once, nothing is sent
        to the client (no Reset, no answer to anything pending), so its port is
        closed and datagrams to it get ICMP port unreachable. What was received
        before stays readable (`deregisters`, `events`, ...); `close()` still ends
        the thread."""

        async def go():
            self._silence()
            await self.ctx.shutdown()

        self._call(go(), timeout=10)

    def _silence(self):
        """From now on nothing leaves the socket (runs on the server's loop)."""
        with self._cond:
            if self.vanished:
                return
            self.vanished = True
            self.events.append(("vanished",))
            self._cond.notify_all()
        transport = self.ctx.request_interfaces[0].token_interface.message_interface.transport
        transport.sendmsg = lambda *args: None

    def _expire(self, now=None):
        """Ends the registrations whose lifetime (+ grace) has passed. Caller holds _cond."""
        now = time.monotonic() if now is None else now
        for reg in self.by_location.values():
            if reg.live and now > reg.refreshed + reg.lifetime + self.grace:
                reg.ended = "expired"
                self.events.append(("expired", reg.ep))
                self._cond.notify_all()

    def forget(self, ep):
        """Drops the endpoint's registration, as a server restarted without its
        registration store (or an operator) would: its location becomes unknown."""
        with self._cond:
            reg = self.registrations[ep]
            if reg.live:
                reg.ended = "forgotten"
                self.events.append(("forgotten", ep))
            return reg

    def live(self, ep=None) -> list:
        """The live registrations (of `ep` only, if given), oldest first."""
        with self._cond:
            self._expire()
            return [r for r in self.by_location.values() if r.live and (ep is None or r.ep == ep)]

    def deregistered_from(self, location) -> bool:
        """Whether a De-register for `location` ("rd/3" or "/rd/3") was accepted."""
        loc = location.strip("/")
        return any(d.location == loc and d.code == Code.DELETED for d in self.deregisters)

    def _handle(self, request):
        path = list(request.opt.uri_path)
        query = {}
        for q in request.opt.uri_query:
            k, _, v = q.partition("=")
            query[k] = v
        with self._cond:
            if request.code == Code.POST and path == ["rd"]:
                if self.register_code is not None:
                    self.refused.append(dict(query))
                    code = self.register_code
                    # Refuse once (a 4.12 test expects the 1.0 retry to succeed).
                    if code == Code.PRECONDITION_FAILED and query.get("lwm2m") == "1.0":
                        code = None
                    if code is not None:
                        self._cond.notify_all()
                        return Message(code=code)
                loc = f"rd/{next(self._ids)}"
                reg = Registration(loc, query.get("ep", ""), query, request.payload.decode(), request.remote)
                self._expire()
                old = self.registrations.get(reg.ep)
                if old is not None and old.live:
                    # A real server keeps one registration per endpoint name.
                    old.ended = "replaced"
                    self.events.append(("replaced", old.ep))
                self.registrations[reg.ep] = reg
                self.by_location[loc] = reg
                self.events.append(("register", reg.ep))
                self._cond.notify_all()
                return Message(code=Code.CREATED, location_path=loc.split("/"))
            if request.code == Code.POST and path == ["bs"]:
                # Bootstrap-Request: this server then drives the client (tests call bs_*).
                self.bs_clients[query.get("ep", "")] = request.remote
                self.bs_queries.append(dict(query))
                self.events.append(("bootstrap-request", query.get("ep", "")))
                self._cond.notify_all()
                return Message(code=Code.CHANGED)
            if request.code == Code.POST and path == ["dp"]:
                # Send (1.1): keep what came, with its content format.
                self.sent.append((request.opt.content_format, request.payload))
                self.events.append(("send", len(request.payload)))
                self._cond.notify_all()
                return Message(code=Code.CHANGED)
            if len(path) == 2 and path[0] == "rd" and request.code in (Code.POST, Code.DELETE):
                return self._registration_request(request, "/".join(path), query)
            if request.code == Code.GET and "/".join(path) in self.files:
                body = self.files["/".join(path)]
                self.file_gets += 1
                return Message(code=Code.CONTENT, payload=body, etag=hashlib.sha256(body).digest()[:8])
            return Message(code=Code.NOT_FOUND)

    def _registration_request(self, request, loc, query):
        """Update (POST) or De-register (DELETE) on a registration location. Caller holds _cond."""
        self._expire()
        reg = self.by_location.get(loc)
        now = time.monotonic()
        if request.code == Code.DELETE:
            if self.vanish_on_deregister:
                self.deregisters.append(DeRegister(loc, reg.ep if reg else None, None, now))
                self.events.append(("deregister-unanswered", reg.ep if reg else loc))
                self._cond.notify_all()
                return _VANISH
            code = Code.DELETED if reg is not None and reg.live else Code.NOT_FOUND
            self.deregisters.append(DeRegister(loc, reg.ep if reg else None, code, now))
        if reg is None or not reg.live:
            kind = "update-unknown" if request.code == Code.POST else "deregister-unknown"
            self.rejected.append((kind, loc, now))
            self.events.append((kind, loc))
            self._cond.notify_all()
            return Message(code=Code.NOT_FOUND)
        if request.code == Code.POST:
            reg.updates.append((dict(query), request.payload.decode()))
            if request.payload:
                reg.links = request.payload.decode()
            if "lt" in query:
                reg.query["lt"] = query["lt"]
            reg.remote = request.remote
            reg.refreshed = now
            self.events.append(("update", reg.ep))
            self._cond.notify_all()
            return Message(code=Code.CHANGED)
        reg.deregistered = True
        reg.ended = "deregistered"
        self.events.append(("deregister", reg.ep))
        self._cond.notify_all()
        return Message(code=Code.DELETED)

    def wait_for(self, predicate, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._expire()
                if predicate():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; events: {self.events}")
                self._cond.wait(min(left, 0.2))

    def wait_registered(self, ep, timeout=30.0):
        self.wait_for(lambda: ep in self.registrations and self.registrations[ep].live, timeout, f"{ep} to register")
        return self.registrations[ep]

    # ---- requests to the client ------------------------------------------

    def request(self, ep, code, path, payload=b"", timeout=60, remote=None, **opts):
        """Sends a request to the registered client; returns the aiocoap response."""
        msg = Message(code=code, payload=payload, **opts)
        msg.remote = remote or self.registrations[ep].remote
        msg.opt.uri_path = [s for s in path.split("/") if s]
        return self.send(msg, timeout)

    def no_answer(self, ep, code, path, within, payload=b"", **opts):
        """Sends a request and checks that nothing at all comes back from the client
        for `within` seconds: no response, no Reset, no other datagram (a queue-mode
        client asleep). Raises AssertionError naming what came instead; then
        abandons the request. Sent non-confirmable: aiocoap keeps retransmitting an
        abandoned CON and, NSTART being 1, would hold every later request to the
        client behind it."""
        remote = self.registrations[ep].remote
        msg = Message(code=code, payload=payload, transport_tuning=aiocoap.Unreliable, **opts)
        msg.remote = remote
        msg.opt.uri_path = [s for s in path.split("/") if s]
        t0 = time.monotonic()

        async def go():
            req = self.ctx.request(msg)
            try:
                r = await asyncio.wait_for(asyncio.shield(req.response), within)
            except asyncio.TimeoutError:
                req.response.cancel()
                return None
            except Exception as e:  # noqa: BLE001 - an error is an answer too
                return e
            return r

        got = self._call(go(), within + 10)
        with self._cond:
            # Answers: responses, ACKs and Resets (a request would be the client waking).
            came = [_summary(d) for t, a, d in self.wire if t >= t0 and a[:2] == remote.sockaddr[:2] and not _is_request(d)]
        if got is not None or came:
            what = f"{got.code} {got.payload!r}" if isinstance(got, Message) else repr(got)
            raise AssertionError(f"{code} {path}: expected no answer within {within} s, got {what}; on the wire: {came}")

    def send(self, msg, timeout=60):
        """Sends a prepared aiocoap Message; returns the response."""

        async def go():
            return await self.ctx.request(msg).response

        return self._call(go(), timeout)

    def bs(self, ep, code, path, payload=b"", **opts):
        """A bootstrap-interface request to a client that sent a Bootstrap-Request."""
        return self.request(ep, code, path, payload, remote=self.bs_clients[ep], **opts)

    def read(self, ep, path, accept=None, **kw):
        if accept is not None:
            kw["accept"] = accept
        return self.request(ep, Code.GET, path, **kw)

    def discover(self, ep, path):
        return self.request(ep, Code.GET, path, accept=LINK)

    def write(self, ep, path, payload, cf, replace=True):
        return self.request(ep, Code.PUT if replace else Code.POST, path, payload, content_format=cf)

    def execute(self, ep, path, args=b""):
        return self.request(ep, Code.POST, path, args)

    def write_attributes(self, ep, path, *query):
        return self.request(ep, Code.PUT, path, uri_query=list(query))

    def create(self, ep, path, payload, cf):
        return self.request(ep, Code.POST, path, payload, content_format=cf)

    def delete(self, ep, path):
        return self.request(ep, Code.DELETE, path)

    def read_composite(self, ep, payload, cf, accept=None):
        kw = {"content_format": cf}
        if accept is not None:
            kw["accept"] = accept
        return self.request(ep, Code.FETCH, "/", payload, **kw)

    def write_composite(self, ep, payload, cf):
        return self.request(ep, Code.iPATCH, "/", payload, content_format=cf)

    def observe(self, ep, path, accept=None, composite=None, cf=None):
        """Starts an observation (Observe-Composite when `composite` is a FETCH body);
        returns (first response, list that fills with notifications, cancel)."""
        reg = self.registrations[ep]
        if composite is not None:
            msg = Message(code=Code.FETCH, observe=0, payload=composite, content_format=cf)
        else:
            msg = Message(code=Code.GET, observe=0)
        if accept is not None:
            msg.opt.accept = accept
        msg.remote = reg.remote
        msg.opt.uri_path = [s for s in path.split("/") if s]
        notes = []

        async def start():
            req = self.ctx.request(msg)
            first = await req.response

            async def follow():
                try:
                    async for n in req.observation:
                        with self._cond:
                            notes.append(n)
                            self._cond.notify_all()
                except Exception as e:  # noqa: BLE001 - observation ended
                    with self._cond:
                        notes.append(e)
                        self._cond.notify_all()

            task = asyncio.ensure_future(follow())
            return first, req, task

        first, req, task = self._call(start())
        # aiocoap holds an observation only weakly, and asyncio its tasks: without
        # this reference the garbage collector may end the observation whenever the
        # caller drops the returned objects, and aiocoap then answers the next
        # notification with a Reset (which lwgate rightly takes as a cancel).
        self._observations.append((req, task))

        def cancel():
            async def c():
                req.observation.cancel()
                task.cancel()

            self._call(c())

        return first, notes, cancel



def _is_request(data):
    return len(data) >= 2 and data[1] >> 5 == 0 and data[1] != 0


def _summary(data):
    try:
        m = Message.decode(data)
    except Exception:  # noqa: BLE001 - raw bytes then
        return data[:16].hex()
    return f"{m.mtype} {m.code} mid={m.mid}"


class RawServer:
    """A bare UDP socket acting as the server, for byte-level tests (malformed
    messages, resets). aiocoap's Message class encodes and decodes, so our own
    codec is never on both sides."""

    def __init__(self):
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.mid = 0x1000

    @property
    def uri(self):
        return f"coap://127.0.0.1:{self.port}"

    def recv(self, timeout=10):
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65536)
        self.client = addr
        return data

    def recv_message(self, timeout=10):
        return Message.decode(self.recv(timeout))

    def accept_registration(self, timeout=30):
        """Waits for the Register request and answers 2.01; returns the request."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv_message(max(0.1, deadline - time.monotonic()))
            if m.code == Code.POST and list(m.opt.uri_path) == ["rd"]:
                ack = Message(mtype=Type.ACK, mid=m.mid, token=m.token, code=Code.CREATED, location_path=["rd", "raw"])
                self.send(ack.encode())
                return m

    def send(self, data: bytes):
        self.sock.sendto(data, self.client)

    def exchange(self, data: bytes, timeout=5):
        """Sends raw bytes; returns the reply datagram, or None if none comes."""
        import socket

        self.send(data)
        try:
            return self.recv(timeout)
        except socket.timeout:
            return None

    def request(self, code, path, payload=b"", **opts):
        self.mid += 1
        m = Message(mtype=Type.CON, mid=self.mid, token=self.mid.to_bytes(2, "big"), code=code, payload=payload, **opts)
        m.opt.uri_path = [s for s in path.split("/") if s]
        return m

    def close(self):
        self.sock.close()


def _free_udp_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
