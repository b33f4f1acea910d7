"""lwgate against a test LwM2M server on aiocoap (an independent CoAP stack):
registration, every device-management operation in every format, Block-wise,
observe, composite operations, access control and malformed requests."""

import json
import signal
import time

import cbor2
import pytest
from aiocoap import Code, Message
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import UintOption

from conftest import ROOT
from lwm2m_formats import links, lwm2m_json, senml_cbor, senml_json, tlv_encode, tlv_int, tlv_resources
from lwm2m_server import LINK, LWM2M_JSON, SENML_CBOR, SENML_JSON, TEXT, TLV, RawServer, TestServer

EP = "test-gw"
OBJECTS = ROOT / "tests" / "fixtures" / "objects"


def server_table(uri, ssid=101, lifetime=300, extra=""):
    return f'[[server]]\nuri = "{uri}"\nssid = {ssid}\nlifetime = {lifetime}\n{extra}\n'


@pytest.fixture
def lwm2m():
    servers = []

    def make(**kw):
        s = TestServer(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def registered(agent, lwm2m):
    """A running agent registered with one test server."""
    srv = lwm2m()
    a = agent(
        extra=f'[lwm2m]\nobject_dirs = ["{OBJECTS}"]\n[device]\nmanufacturer = "ACME Gateways"\nmodel = "GW-9"\nserial = "SN-42"\n',
        servers=server_table(srv.uri),
    ).start()
    reg = srv.wait_registered(EP)
    # The server has the registration; lwgate has it once the 2.01 is in. A test
    # going on before that races the Register (SIGTERM would find none to end).
    srv.wait_for(lambda: a.status_json()["servers"][0]["state"] == "registered", 10, "lwgate to see its 2.01")
    return a, srv, reg


def test_register_parameters_and_status(registered):
    a, srv, reg = registered
    assert reg.query["ep"] == EP
    assert reg.query["lt"] == "300"
    assert reg.query["lwm2m"] == "1.1"
    assert reg.query["b"] == "U"
    targets = [t for t, _ in links(reg.links)]
    assert targets[0] == "/"
    assert "/1/0" in targets and "/3/0" in targets and "/4/0" in targets
    assert not any(t.startswith("/0") for t in targets), "Security must not be listed"
    assert links(reg.links)[0][1]["rt"] == "oma.lwm2m"
    assert links(reg.links)[0][1]["ct"] == "112"
    st = a.status_json()["servers"][0]
    assert st["state"] == "registered" and st["location"] == "/" + reg.location
    assert st["lwm2m_version"] == "1.1"


def test_read_each_level_and_format(registered):
    a, srv, reg = registered
    r = srv.read(EP, "/3/0/0")
    assert (r.code, r.opt.content_format, r.payload) == (Code.CONTENT, TEXT, b"ACME Gateways")
    r = srv.read(EP, "/3/0/2", accept=TEXT)
    assert r.payload == b"SN-42"

    r = srv.read(EP, "/3/0", accept=TLV)
    assert r.opt.content_format == TLV
    res = tlv_resources(r.payload)
    assert res["0"] == b"ACME Gateways" and res["1"] == b"GW-9"
    assert tlv_int(res["11/0"]) == 0
    assert abs(tlv_int(res["13"]) - time.time()) < 30, "current time"

    r = srv.read(EP, "/3/0", accept=SENML_JSON)
    v = senml_json(r.payload)
    assert v["/3/0/0"] == "ACME Gateways" and v["/3/0/11/0"] == 0

    r = srv.read(EP, "/3/0", accept=SENML_CBOR)
    v = senml_cbor(r.payload)
    assert v["/3/0/1"] == "GW-9" and abs(v["/3/0/13"] - time.time()) < 30

    r = srv.read(EP, "/3/0", accept=LWM2M_JSON)
    v = lwm2m_json(r.payload)
    assert v["/3/0/2"] == "SN-42"

    r = srv.read(EP, "/3", accept=TLV)
    assert r.code == Code.CONTENT and r.payload[0] >> 6 == 0, "object read: instance TLVs"
    r = srv.read(EP, "/1/0/1", accept=SENML_CBOR)
    assert senml_cbor(r.payload) == {"/1/0/1": 300}
    r = srv.read(EP, "/4/0", accept=SENML_JSON)
    assert "/4/0/0" in senml_json(r.payload)


@pytest.mark.parametrize("fmt", [TEXT, TLV, SENML_JSON, SENML_CBOR, LWM2M_JSON])
def test_write_lifetime_in_each_format_updates_registration(registered, fmt):
    a, srv, reg = registered
    payloads = {
        TEXT: b"120",
        TLV: tlv_encode(3, 1, (120).to_bytes(1, "big")),
        SENML_JSON: json.dumps([{"bn": "/1/0/1", "v": 120}]).encode(),
        SENML_CBOR: cbor2.dumps([{-2: "/1/0/1", 2: 120}]),
        LWM2M_JSON: json.dumps({"bn": "/1/0/", "e": [{"n": "1", "v": 120}]}).encode(),
    }
    r = srv.write(EP, "/1/0/1", payloads[fmt], fmt)
    assert r.code == Code.CHANGED, r.payload
    srv.wait_for(lambda: any(q.get("lt") == "120" for q, _ in reg.updates), 15, "Update with lt=120")
    assert srv.read(EP, "/1/0/1").payload == b"120"


def test_partial_update_and_replace_of_an_instance(registered):
    a, srv, reg = registered
    body = json.dumps([{"bn": "/1/0/", "n": "2", "v": 5}, {"n": "3", "v": 50}]).encode()
    assert srv.write(EP, "/1/0", body, SENML_JSON, replace=False).code == Code.CHANGED
    v = senml_json(srv.read(EP, "/1/0", accept=SENML_JSON).payload)
    assert v["/1/0/2"] == 5 and v["/1/0/3"] == 50 and v["/1/0/1"] == 300
    body = tlv_encode(3, 1, (300).to_bytes(2, "big")) + tlv_encode(3, 6, b"\x01") + tlv_encode(3, 7, b"U")
    assert srv.write(EP, "/1/0", body, TLV, replace=True).code == Code.CHANGED
    v = senml_json(srv.read(EP, "/1/0", accept=SENML_JSON).payload)
    assert "/1/0/2" not in v, "replace removes what the payload omits"


def test_execute_registration_update_trigger(registered):
    a, srv, reg = registered
    n = len(reg.updates)
    assert srv.execute(EP, "/1/0/8").code == Code.CHANGED
    srv.wait_for(lambda: len(reg.updates) > n, 15, "Update after /1/0/8")
    assert srv.execute(EP, "/1/0/8", b"0='x',1").code == Code.CHANGED
    assert srv.execute(EP, "/1/0/8", b"zz").code == Code.BAD_REQUEST
    assert srv.execute(EP, "/1/0/1").code == Code.METHOD_NOT_ALLOWED


def test_discover_and_write_attributes(registered):
    a, srv, reg = registered
    r = srv.write_attributes(EP, "/3/0/13", "pmin=10", "pmax=60")
    assert r.code == Code.CHANGED
    r = srv.discover(EP, "/3/0")
    assert r.opt.content_format == LINK
    found = dict(links(r.payload.decode()))
    assert found["/3/0/13"] == {"pmin": "10", "pmax": "60"}
    assert "/3/0/4" in found, "executables are listed"
    assert found["/3/0/11"]["dim"] == "1"
    r = srv.discover(EP, "/1")
    assert links(r.payload.decode())[0] == ("/1", {"ver": "1.1"})
    assert srv.write_attributes(EP, "/3/0/13", "lt=5", "gt=10", "st=3").code == Code.BAD_REQUEST
    assert srv.write_attributes(EP, "/3/0/0", "gt=1").code == Code.BAD_REQUEST, "gt on a string"


def test_create_and_delete_with_registration_update(registered):
    a, srv, reg = registered
    body = json.dumps([{"bn": "/3303/4/", "n": "5750", "vs": "boiler"}]).encode()
    r = srv.create(EP, "/3303", body, SENML_JSON)
    assert r.code == Code.CREATED and list(r.opt.location_path) == ["3303", "4"]
    srv.wait_for(lambda: "</3303/4>" in reg.links, 15, "Update listing /3303/4")
    r = srv.create(EP, "/3303", tlv_encode(3, 5750, b"air"), TLV)
    assert list(r.opt.location_path) == ["3303", "0"]
    assert srv.read(EP, "/3303/0/5750").payload == b"air"
    assert srv.delete(EP, "/3303/4").code == Code.DELETED
    assert srv.read(EP, "/3303/4").code == Code.NOT_FOUND
    srv.wait_for(lambda: "</3303/4>" not in reg.links, 15, "Update without /3303/4")
    assert srv.delete(EP, "/3/0").code == Code.METHOD_NOT_ALLOWED


def test_deleting_an_observed_instance_ends_the_observation(registered):
    a, srv, reg = registered
    body = json.dumps([{"bn": "/3303/7/", "n": "5750", "vs": "probe"}]).encode()
    assert srv.create(EP, "/3303", body, SENML_JSON).code == Code.CREATED
    first, notes, cancel = srv.observe(EP, "/3303/7")
    assert first.code == Code.CONTENT
    assert a.status_json()["observations"] == 1
    assert srv.delete(EP, "/3303/7").code == Code.DELETED
    # lwgate ends it with a 4.04 (no Observe option); aiocoap then closes it.
    srv.wait_for(
        lambda: any(getattr(n, "code", None) == Code.NOT_FOUND for n in notes), 10, "a 4.04 ending the observation"
    )
    assert a.status_json()["observations"] == 0


def test_block1_write_and_block2_read(registered):
    a, srv, reg = registered
    srv.create(EP, "/3341", tlv_encode(0, 0, tlv_encode(3, 5527, b"hi")), TLV)
    text = ("lwgate-block-" * 400).encode()  # 5200 bytes: several 1024-byte blocks each way
    r = srv.write(EP, "/3341/0/5527", text, TEXT)
    assert r.code == Code.CHANGED
    r = srv.read(EP, "/3341/0/5527")
    assert r.payload == text, "aiocoap reassembled our Block2 response"
    r = srv.read(EP, "/3341/0", accept=SENML_CBOR)
    assert senml_cbor(r.payload)["/3341/0/5527"] == text.decode()


def test_observe_sends_notifications(registered):
    a, srv, reg = registered
    assert srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=3").code == Code.CHANGED
    first, notes, cancel = srv.observe(EP, "/3/0/13")
    assert first.code == Code.CONTENT and first.opt.observe is not None
    t0 = int(first.payload)
    srv.wait_for(lambda: len(notes) >= 2, 15, "two notifications")
    values = [int(n.payload) for n in notes[:2]]
    assert values[0] > t0 and values[1] > values[0]
    cancel()


def test_read_and_write_composite(registered):
    a, srv, reg = registered
    q = json.dumps([{"n": "/3/0/0"}, {"n": "/1/0/1"}]).encode()
    r = srv.read_composite(EP, q, SENML_JSON)
    assert r.code == Code.CONTENT
    assert senml_json(r.payload) == {"/3/0/0": "ACME Gateways", "/1/0/1": 300}
    r = srv.read_composite(EP, cbor2.dumps([{0: "/3/0/1"}]), SENML_CBOR, accept=SENML_CBOR)
    assert senml_cbor(r.payload) == {"/3/0/1": "GW-9"}
    w = json.dumps([{"n": "/1/0/2", "v": 7}, {"n": "/1/0/3", "v": 70}]).encode()
    assert srv.write_composite(EP, w, SENML_JSON).code == Code.CHANGED
    assert srv.read(EP, "/1/0/3").payload == b"70"
    bad = json.dumps([{"n": "/1/0/2", "v": 8}, {"n": "/3/0/0", "vs": "x"}]).encode()
    assert srv.write_composite(EP, bad, SENML_JSON).code == Code.METHOD_NOT_ALLOWED
    assert srv.read(EP, "/1/0/2").payload == b"7", "atomic: nothing applied"


def test_malformed_requests_get_the_right_4xx(registered):
    a, srv, reg = registered
    assert srv.read(EP, "/3/x").code == Code.BAD_REQUEST
    assert srv.read(EP, "/3/0/0/0/0").code == Code.BAD_REQUEST
    assert srv.read(EP, "/77").code == Code.NOT_FOUND
    assert srv.read(EP, "/3/9").code == Code.NOT_FOUND
    assert srv.read(EP, "/0/0").code == Code.UNAUTHORIZED
    assert srv.read(EP, "/3/0", accept=9999).code == Code.NOT_ACCEPTABLE
    assert srv.read(EP, "/3/0", accept=TEXT).code == Code.NOT_ACCEPTABLE
    assert srv.write(EP, "/1/0/1", b"1", 4242).code == Code.UNSUPPORTED_CONTENT_FORMAT
    assert srv.write(EP, "/1/0/1", b"abc", TEXT).code == Code.BAD_REQUEST
    assert srv.write(EP, "/1/0", b"\xc8\x01\x40", TLV).code == Code.BAD_REQUEST
    assert srv.write(EP, "/1/0", b"[{", SENML_JSON).code == Code.BAD_REQUEST
    assert srv.write(EP, "/1/0", b"\xff\xff", SENML_CBOR).code == Code.BAD_REQUEST
    assert srv.write(EP, "/1/0/0", b"5", TEXT).code == Code.METHOD_NOT_ALLOWED
    r = srv.request(EP, Code.GET, "/3/0", uri_query=["x"])
    assert r.code == Code.CONTENT, "queries on a read are ignored"
    m = Message(code=Code.GET)
    m.opt.add_option(UintOption(2049, 1))  # unknown critical option
    reg_remote = reg.remote
    m.remote = reg_remote
    m.opt.uri_path = ["3", "0"]
    r = srv.send(m)
    assert r.code == Code.BAD_OPTION
    # The agent is still fine.
    assert srv.read(EP, "/3/0/0").code == Code.CONTENT
    assert a.proc.poll() is None


def test_sigterm_deregisters_and_exits_zero(registered):
    a, srv, reg = registered
    assert a.stop(signal.SIGTERM) == 0
    assert reg.deregistered
    assert ("deregister", EP) in srv.events
    assert srv.deregistered_from(reg.location) and srv.live() == [], (srv.deregisters, srv.events)
    assert srv.rejected == [], "nothing sent to a location the server does not know"


def test_a_forgotten_registration_is_replaced_by_a_new_one(registered):
    a, srv, reg = registered
    srv.forget(EP)  # the server lost it (restarted without its store, say)
    assert srv.execute(EP, "/1/0/8").code == Code.CHANGED  # Registration Update Trigger
    srv.wait_for(lambda: srv.live(EP), 15, "a new Register after the 4.04 to Update")
    assert srv.rejected and srv.rejected[0][:2] == ("update-unknown", reg.location), srv.events
    (new,) = srv.live()
    assert new.location != reg.location and new.ep == EP
    srv.wait_for(lambda: a.status_json()["servers"][0]["location"] == "/" + new.location, 10, "lwgate on the new location")
    assert a.stop() == 0
    assert srv.deregistered_from(new.location) and srv.live() == []


def test_lifetime_update_is_sent_before_expiry(agent, lwm2m):
    srv = lwm2m()
    a = agent(servers=server_table(srv.uri, lifetime=20)).start()
    reg = srv.wait_registered(EP)
    t0 = time.monotonic()
    srv.wait_for(lambda: len(reg.updates) >= 1, 25, "an Update before the 20 s lifetime ends")
    assert time.monotonic() - t0 < 20
    assert reg.updates[0] == ({}, ""), "nothing changed: no parameters, no payload"
    assert a.stop() == 0


def test_precondition_failed_falls_back_to_1_0(agent, lwm2m):
    srv = lwm2m(register_code=Code.PRECONDITION_FAILED)
    a = agent(servers=server_table(srv.uri)).start()
    reg = srv.wait_registered(EP)
    assert srv.refused[0]["lwm2m"] == "1.1"
    assert reg.query["lwm2m"] == "1.0"
    r = srv.read(EP, "/3/0")
    assert r.opt.content_format == TLV, "1.0 default format"
    assert a.status_json()["servers"][0]["lwm2m_version"] == "1.0"
    assert a.stop() == 0


def test_unreachable_server_is_reported_not_fatal(agent):
    raw = RawServer()  # receives but never answers
    a = agent(servers=server_table(raw.uri)).start()
    st = a.status_json()["servers"][0]
    assert st["state"] in ("starting", "registering")
    assert a.proc.poll() is None
    assert a.stop() == 0, "stops cleanly even with an unanswered registration"
    raw.close()


def test_two_servers_and_access_control(agent, lwm2m):
    s1, s2 = lwm2m(), lwm2m()
    a = agent(servers=server_table(s1.uri, 101) + server_table(s2.uri, 102)).start()
    s1.wait_registered(EP)
    s2.wait_registered(EP)
    st = a.status_json()["servers"]
    assert [s["state"] for s in st] == ["registered", "registered"]
    assert s2.read(EP, "/3/0/0").code == Code.CONTENT
    assert s2.read(EP, "/1/1/0").payload == b"102"
    assert s2.read(EP, "/1/0/0").code == Code.UNAUTHORIZED
    assert s2.write(EP, "/1/0/1", b"60", TEXT).code == Code.UNAUTHORIZED
    assert s1.write(EP, "/1/0/1", b"60", TEXT).code == Code.CHANGED
    # Access Control instances are visible to their owners.
    acl = senml_json(s1.read(EP, "/2", accept=SENML_JSON).payload)
    assert any(k.endswith("/3") and v == 101 for k, v in acl.items())
    assert a.stop() == 0


def test_raw_malformed_datagrams(agent):
    raw = RawServer()
    a = agent(servers=server_table(raw.uri)).start()
    raw.accept_registration()
    # CON with token length 9: format error -> Reset with the same message id.
    reply = raw.exchange(bytes([0x49, 0x01, 0x12, 0x34]) + bytes(9))
    assert reply is not None
    m = Message.decode(reply)
    assert (m.mtype, m.mid) == (Type.RST, 0x1234)
    # NON with garbage: silently ignored.
    assert raw.exchange(bytes([0x59, 0x01, 0x12, 0x35]) + bytes(9), timeout=1) is None
    # CoAP ping: Reset.
    m = Message.decode(raw.exchange(bytes([0x40, 0x00, 0x43, 0x21])))
    assert (m.mtype, m.mid) == (Type.RST, 0x4321)
    # A truncated option after a valid header.
    reply = raw.exchange(bytes([0x40, 0x01, 0x00, 0x07, 0xB3, 0x33]))
    assert reply is not None and Message.decode(reply).mtype == Type.RST
    # A well-formed read still works, and a duplicate gets the same answer.
    req = raw.request(Code.GET, "/3/0/0").encode()
    first = raw.exchange(req)
    again = raw.exchange(req)
    assert first == again and Message.decode(first).code == Code.CONTENT
    assert a.proc.poll() is None
    a.kill()
    raw.close()


def _instance_payload(fmt, obj, inst, res, text):
    """An instance with one string resource, encoded independently of lwgate."""
    if fmt == TLV:
        return tlv_encode(0, inst, tlv_encode(3, res, text.encode()))
    if fmt == SENML_JSON:
        return json.dumps([{"bn": f"/{obj}/{inst}/", "n": str(res), "vs": text}]).encode()
    if fmt == SENML_CBOR:
        return cbor2.dumps([{-2: f"/{obj}/{inst}/", 0: str(res), 3: text}])
    return json.dumps({"bn": f"/{obj}/{inst}/", "e": [{"n": str(res), "sv": text}]}).encode()


@pytest.mark.parametrize("fmt", [TLV, SENML_JSON, SENML_CBOR, LWM2M_JSON])
def test_create_write_read_observe_in_each_format(registered, fmt):
    a, srv, reg = registered
    r = srv.create(EP, "/3303", _instance_payload(fmt, 3303, 5, 5750, "inlet"), fmt)
    assert r.code == Code.CREATED, r.payload
    assert list(r.opt.location_path) == ["3303", "5"]
    r = srv.write(EP, "/3303/5", _instance_payload(fmt, 3303, 5, 5750, "outlet"), fmt, replace=False)
    assert r.code == Code.CHANGED, r.payload
    r = srv.read(EP, "/3303/5", accept=fmt)
    assert r.opt.content_format == fmt
    decoded = {
        TLV: lambda b: {f"/3303/5/{k}": v.decode() for k, v in tlv_resources(b).items()},
        SENML_JSON: senml_json,
        SENML_CBOR: senml_cbor,
        LWM2M_JSON: lwm2m_json,
    }[fmt](r.payload)
    assert decoded["/3303/5/5750"] == "outlet"
    first, notes, cancel = srv.observe(EP, "/3303/5", accept=fmt)
    assert first.code == Code.CONTENT and first.opt.content_format == fmt
    srv.write(EP, "/3303/5", _instance_payload(fmt, 3303, 5, 5750, "return"), fmt, replace=False)
    srv.wait_for(lambda: len(notes) >= 1, 10, "a notification after the write")
    assert notes[0].opt.content_format == fmt
    assert b"return" in notes[0].payload
    cancel()
    assert srv.delete(EP, "/3303/5").code == Code.DELETED


def test_observe_composite(registered):
    a, srv, reg = registered
    assert srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=2").code == Code.CHANGED
    body = json.dumps([{"n": "/3/0/13"}, {"n": "/1/0/1"}]).encode()
    first, notes, cancel = srv.observe(EP, "/", composite=body, cf=SENML_JSON)
    assert first.code == Code.CONTENT and first.opt.observe is not None
    assert set(senml_json(first.payload)) == {"/3/0/13", "/1/0/1"}
    srv.wait_for(lambda: len(notes) >= 1, 15, "a composite notification")
    v = senml_json(notes[0].payload)
    assert set(v) == {"/3/0/13", "/1/0/1"} and v["/1/0/1"] == 300
    cancel()


def test_send_from_the_command_line_and_mute_send(registered):
    a, srv, reg = registered
    r = a.cli("send", "--config", str(a.config), "/3/0/13", "/1/0/1", check=False)
    assert r.returncode == 0 and r.stdout.strip() == "sent", r.stderr
    srv.wait_for(lambda: len(srv.sent) == 1, 10, "a Send")
    cf, payload = srv.sent[0]
    assert cf == SENML_CBOR
    values = senml_cbor(payload)
    assert values["/1/0/1"] == 300 and abs(values["/3/0/13"] - time.time()) < 30
    assert cbor2.loads(payload)[0][-3] > 1_700_000_000, "base time is the sampling time"
    # Mute Send (/1/0/23) set by the server: refused, with a reason.
    assert srv.write(EP, "/1/0/23", b"1", TEXT).code == Code.CHANGED
    r = a.cli("send", "--config", str(a.config), "/3/0/13", check=False)
    assert r.returncode == 1 and "muted" in r.stderr
    r = a.cli("send", "--config", str(a.config), "/3/x", check=False)
    assert r.returncode == 1


# ---- the test server itself: as strict as a real one ------------------------------


def test_the_test_server_is_as_strict_as_a_real_one():
    """What tests/lwm2m_server.py promises, checked from an independent client."""
    import asyncio
    import socket

    import aiocoap

    srv = TestServer(grace=0.3)

    async def scenario():
        ctx = await aiocoap.Context.create_client_context()

        async def req(code, path, *query):
            m = Message(code=code, uri=f"coap://127.0.0.1:{srv.port}/{path}")
            m.opt.uri_query = list(query)
            return await ctx.request(m).response

        try:
            r = await req(Code.POST, "rd", "ep=x", "lt=1")
            one = "/".join(r.opt.location_path)
            assert (r.code, len(srv.live())) == (Code.CREATED, 1)
            assert (await req(Code.POST, one)).code == Code.CHANGED
            await asyncio.sleep(1.5)  # lifetime 1 s + grace 0.3 s
            assert (await req(Code.POST, one)).code == Code.NOT_FOUND, "expired"
            assert srv.registrations["x"].ended == "expired" and srv.live() == []
            two = "/".join((await req(Code.POST, "rd", "ep=x", "lt=60")).opt.location_path)
            three = "/".join((await req(Code.POST, "rd", "ep=x", "lt=60")).opt.location_path)
            assert srv.by_location[two].ended == "replaced" and [r.location for r in srv.live()] == [three]
            assert (await req(Code.POST, two)).code == Code.NOT_FOUND
            assert (await req(Code.DELETE, two)).code == Code.NOT_FOUND
            assert (await req(Code.DELETE, three)).code == Code.DELETED
            assert (await req(Code.DELETE, three)).code == Code.NOT_FOUND, "de-registered already"
            assert (await req(Code.POST, "rd/77")).code == Code.NOT_FOUND
            assert srv.deregistered_from(three) and not srv.deregistered_from(two)
            assert [d.code for d in srv.deregisters] == [Code.NOT_FOUND, Code.DELETED, Code.NOT_FOUND]
            assert [k for k, _, _ in srv.rejected] == ["update-unknown", "update-unknown", "deregister-unknown",
                                                       "deregister-unknown", "update-unknown"]
        finally:
            await ctx.shutdown()

    try:
        asyncio.run(scenario())
        srv.vanish()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", srv.port))
            s.settimeout(5)
            s.send(bytes([0x40, 0x00, 0x00, 0x01]))  # CoAP ping
            with pytest.raises(ConnectionRefusedError):
                s.recv(64)  # ICMP port unreachable: the port is closed
    finally:
        srv.close()

    # vanish_on_deregister: the De-register is recorded, never answered, the port closes.
    srv = TestServer(vanish_on_deregister=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", srv.port))
            s.settimeout(5)
            s.send(Message(mtype=Type.CON, mid=1, token=b"\x01", code=Code.POST, uri_path=["rd"], uri_query=["ep=y"]).encode())
            loc = list(Message.decode(s.recv(1500)).opt.location_path)
            s.send(Message(mtype=Type.CON, mid=2, token=b"\x02", code=Code.DELETE, uri_path=loc).encode())
            s.settimeout(1)
            with pytest.raises(TimeoutError):
                s.recv(1500)  # no answer, no Reset
            s.send(Message(mtype=Type.CON, mid=2, token=b"\x02", code=Code.DELETE, uri_path=loc).encode())
            with pytest.raises(ConnectionRefusedError):
                s.recv(1500)
        assert srv.vanished and [(d.location, d.ep, d.code) for d in srv.deregisters] == [("/".join(loc), "y", None)]
    finally:
        srv.close()
