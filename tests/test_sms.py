"""SMS triggers through the gateway's modem, as an operator meets them: the fake
TS 27.005 modem (bridges/tests/fixtures/modem/fake_modem.py) on a socat pty pair is
the AT port of a [modem] table; SMS-DELIVER PDUs built here (not by lwgate's codec)
carrying CoAP messages built by aiocoap arrive from "the network"; the aiocoap
LwM2M test server sees what lwgate does about them. A trigger from the server's SMS
number wakes a queue-mode sleeper and brings an Update over UDP; the answer goes
back by SMS; a stranger, a write, a read and a replay are refused or ignored, and
`lwgate status` says so; messages stored while lwgate was down are read and deleted
at start; direct delivery (+CMT) is acknowledged with AT+CNMA."""

import json
import os
import shutil
import subprocess
import sys
import time

import aiocoap
import pytest
from aiocoap import CON, NON, Code, Message

from conftest import ROOT, wait_for
from lwm2m_server import TestServer

EP = "test-gw"
MODEM = ROOT / "bridges" / "tests" / "fixtures" / "modem"
SERVER_NUMBER = "+447700900123"
OPERATOR_PHONE = "+447700900555"
STRANGER = "+447700900666"


def semi_octets(digits):
    d = digits + ("F" if len(digits) % 2 else "")
    return "".join(d[i + 1] + d[i] for i in range(0, len(d), 2))


def deliver_pdu(sender, data, udh=b""):
    """An SMS-DELIVER in PDU-mode hex (TS 23.040 9.2.2.1): SMSC +447700900000,
    8-bit data (DCS 0x04), a fixed service-centre time stamp."""
    digits = sender.lstrip("+")
    ton = "91" if sender.startswith("+") else "81"
    first = 0x44 if udh else 0x04  # SMS-DELIVER, TP-UDHI when there is a header
    ud = udh + data
    return (
        "0791447700090000"
        + f"{first:02X}{len(digits):02X}{ton}{semi_octets(digits)}"
        + "0004"  # PID, DCS
        + "62201241000000"  # 2026-02-21 14:00:00 +00
        + f"{len(ud):02X}"
        + ud.hex().upper()
    )


def coap(code, path, mtype=CON, mid=0x1234, token=b"\x51\x52", payload=b""):
    m = Message(mtype=mtype, code=code, uri_path=path, payload=payload, mid=mid, token=token)
    return m.encode()


def submit_user_data(pdu):
    """The user data of an SMS-SUBMIT the agent sent (TS 23.040 9.2.2.2)."""
    b = bytes.fromhex(pdu)
    i = 1 + b[0]  # the SMSC field
    first = b[i]
    i += 2  # first octet, TP-MR
    n = b[i]
    i += 2 + (n + 1) // 2  # TP-DA
    i += 2  # PID, DCS
    vpf = (first >> 3) & 3
    i += {0: 0, 2: 1}.get(vpf, 7)
    udl = b[i]
    return b[i + 1 : i + 1 + udl]


class FakeModem:
    def __init__(self, tmp):
        if not shutil.which("socat"):
            if os.environ.get("CI"):
                pytest.fail("the SMS tests need socat (apt install socat)")
            pytest.skip("socat is not installed")
        self.dir = tmp
        self.fifo = tmp / "inject.fifo"
        self.agent_tty = tmp / "ttyAGENT"
        self.socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={tmp / 'ttyMODEM'}", f"pty,raw,echo=0,link={self.agent_tty}"],
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: (tmp / "ttyMODEM").exists() and self.agent_tty.exists(), 5, "socat's ptys")
        self.log = tmp / "modem.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(MODEM / "fake_modem.py"), str(tmp / "ttyMODEM"), str(self.fifo),
             str(MODEM / "canned.txt")],
            stderr=self.log.open("w"),
        )
        wait_for(lambda: "ready" in self.log.read_text(), 5, "the fake modem")

    def inject(self, pdu):
        with open(self.fifo, "w") as f:
            f.write(pdu + "\n")

    def text(self):
        return self.log.read_text()

    def sent(self):
        """User data of every SMS the agent sent (AT+CMGS), in order."""
        out = []
        for line in self.text().splitlines():
            if " MODEM << " in line and "<Ctrl-Z>" in line:
                pdu = line.split("<< ", 1)[1].strip("'\"").replace("<Ctrl-Z>", "")
                out.append(submit_user_data(pdu))
        return out

    def stop(self):
        for p in (self.proc, self.socat):
            p.kill()
            p.wait(5)


@pytest.fixture
def modem(tmp_path):
    m = FakeModem(tmp_path)
    yield m
    m.stop()


def sms_config(modem, extra_modem="", extra_sms=""):
    return (
        f'[modem]\nport = "{modem.agent_tty}"\n{extra_modem}\n'
        f'[sms]\nallow = ["{OPERATOR_PHONE}"]\n{extra_sms}\n'
    )


def sms_server(srv, binding="US", extra=""):
    return (
        f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\nbinding = "{binding}"\n'
        f'sms_number = "{SERVER_NUMBER}"\n{extra}'
    )


def status(a):
    return a.cli("status", "--config", str(a.config)).stdout


def sms_lines(a):
    return a.status_json().get("sms", [])


def updates(srv):
    reg = srv.registrations.get(EP)
    return len(reg.updates) if reg else 0


def wait_modem_ready(a):
    wait_for(lambda: (a.status_json().get("modem") or "").find("ready") >= 0, 15, "the modem ready")


def test_a_trigger_wakes_a_sleeping_gateway_and_is_answered_by_sms(agent, modem):
    srv = TestServer()
    try:
        a = agent(
            extra=sms_config(modem),
            servers=sms_server(srv, "UQS", 'queue_timeout = 2\n'),
        ).start()
        reg = srv.wait_registered(EP)
        wait_modem_ready(a)
        # The modem's own number (AT+CNUM) is the sms= of the next Update.
        srv.wait_for(lambda: any(q.get("sms") == "+447700900999" for q, _ in reg.updates)
                     or reg.query.get("sms") == "+447700900999", 15, "sms= in an Update")
        st = status(a)
        assert "modem:" in st and "ready" in st and "operator Fake Net" in st and "signal -73 dBm" in st, st
        assert srv.read(EP, "/4/0/2").payload == b"-73"
        # What a server reads to know it may wake the gateway by SMS.
        assert srv.read(EP, "/3/0/16").payload == b"US"
        assert srv.read(EP, "/1/0/21").payload == b"1"
        assert srv.read(EP, "/0/0/9").code != Code.CONTENT, "the Security object is not readable"
        srv.wait_for(lambda: "asleep" in a.status_json()["servers"][0]["state"], 15, "queue-mode sleep")
        before = updates(srv)
        modem.inject(deliver_pdu(SERVER_NUMBER, coap(Code.POST, ("1", "0", "8"), mid=0x3A7F)))
        srv.wait_for(lambda: updates(srv) > before, 15, "the Update the SMS triggered")
        # The piggybacked ACK 2.04 goes back to the server's number.
        wait_for(lambda: modem.sent(), 10, "the SMS answer")
        ack = Message.decode(modem.sent()[0])
        assert ack.mtype == aiocoap.ACK and ack.code == Code.CHANGED and ack.mid == 0x3A7F, ack
        assert any("accepted" in line and SERVER_NUMBER in line for line in sms_lines(a)), sms_lines(a)
        # The stored message was deleted once handled.
        assert "AT+CMGD=" in modem.text()
        # The same SMS again (the SMSC retried): answered as before, nothing done.
        n = updates(srv)
        modem.inject(deliver_pdu(SERVER_NUMBER, coap(Code.POST, ("1", "0", "8"), mid=0x3A7F)))
        wait_for(lambda: len(modem.sent()) >= 2, 10, "the repeated answer")
        assert modem.sent()[1] == modem.sent()[0]
        time.sleep(1)
        assert updates(srv) == n
        assert any("repeated" in line for line in sms_lines(a)), sms_lines(a)
        a.stop()
    finally:
        srv.close()


def test_strangers_writes_and_reads_are_refused(agent, modem):

    srv = TestServer()
    try:
        a = agent(extra=sms_config(modem), servers=sms_server(srv)).start()
        srv.wait_registered(EP)
        wait_modem_ready(a)
        n = updates(srv)
        # A stranger's trigger: refused, not answered (an answer costs and confirms the number).
        modem.inject(deliver_pdu(STRANGER, coap(Code.POST, ("1", "0", "8"), mid=1)))
        wait_for(lambda: any(STRANGER in line for line in sms_lines(a)), 10, "the stranger refused")
        assert "refused" in sms_lines(a)[-1] and "neither a server" in sms_lines(a)[-1], sms_lines(a)
        # A write of a Package URI from the server's own number (the 2-part vector of
        # the fixture, concatenated): refused with 4.01, nothing written.
        vec = json.loads((MODEM / "vectors.json").read_text())["concat_2part_put_5_0_1"]
        for part in vec["parts"]:
            modem.inject(part["pdu"])
        wait_for(lambda: any("a Write" in line for line in sms_lines(a)), 10, "the write refused")
        wait_for(lambda: modem.sent(), 10, "the 4.01")
        assert Message.decode(modem.sent()[-1]).code == Code.UNAUTHORIZED
        # A read from the operator's phone (allow-listed): refused too.
        modem.inject(deliver_pdu(OPERATOR_PHONE, coap(Code.GET, ("3", "0", "0"), mid=2)))
        wait_for(lambda: any("a Read" in line for line in sms_lines(a)), 10, "the read refused")
        # The operator's phone may trigger.
        modem.inject(deliver_pdu(OPERATOR_PHONE, coap(Code.POST, ("1", "0", "8"), mtype=NON, mid=3)))
        srv.wait_for(lambda: updates(srv) > n, 15, "the operator's trigger")
        log = a.log.read_text()
        assert "SMS refused" in log and STRANGER in log, log[-3000:]
        a.stop()
    finally:
        srv.close()


def test_messages_stored_while_lwgate_was_down_are_read_at_start(agent, modem):
    srv = TestServer()
    try:
        a = agent(extra=sms_config(modem), servers=sms_server(srv)).start()
        srv.wait_registered(EP)
        wait_modem_ready(a)
        assert a.stop() == 0
        n = updates(srv)
        modem.inject(deliver_pdu(SERVER_NUMBER, coap(Code.POST, ("1", "0", "8"), mid=7)))
        wait_for(lambda: "+CMTI" in modem.text(), 5, "the modem stored it")
        a.start()
        wait_for(lambda: any("accepted" in line for line in sms_lines(a)), 15, "the stored trigger taken")
        assert "AT+CMGL=4" in modem.text() and "AT+CMGD=" in modem.text()
        srv.wait_for(lambda: updates(srv) > n, 15, "its Update")
        a.stop()
    finally:
        srv.close()


def test_direct_delivery_is_acknowledged(agent, modem):
    srv = TestServer()
    try:
        a = agent(extra=sms_config(modem, 'delivery = "direct"\n'), servers=sms_server(srv)).start()
        srv.wait_registered(EP)
        wait_modem_ready(a)
        n = updates(srv)
        modem.inject(deliver_pdu(SERVER_NUMBER, coap(Code.POST, ("1", "0", "8"), mid=9)))
        srv.wait_for(lambda: updates(srv) > n, 15, "the Update")
        wait_for(lambda: "AT+CNMA" in modem.text(), 5, "the acknowledgement")
        time.sleep(5.5)
        assert "no +CNMA in time" not in modem.text()
        a.stop()
    finally:
        srv.close()


def test_sms_decode_prints_what_a_pdu_holds(agent):
    a = agent()
    vec = json.loads((MODEM / "vectors.json").read_text())
    out = a.cli("sms", "decode", vec["single_8bit_post_1_0_8"]["pdu"]).stdout
    assert "from +447700900123" in out and "CON POST mid=0x3a7f" in out and "/1/0/8" in out, out
    parts = [p["pdu"] for p in vec["concat_2part_put_5_0_1"]["parts"]]
    out = a.cli("sms", "decode", *parts).stdout
    assert "part 1 of 2" in out and "joined: 184 octets" in out and "CON PUT" in out and "/5/0/1" in out, out
    r = a.cli("sms", "decode", "0791zz", check=False)
    assert r.returncode == 1 and "not an SMS PDU" in r.stderr, r.stderr


class ModemManagerRig:
    """Debian's ModemManager in test mode on a private bus, owning the fake modem
    (which listens on a Unix socket itself: bridges/tests/fixtures/modem/mm/README.md)."""

    def __init__(self, tmp):
        missing = [t for t in ("ModemManager", "dbus-daemon", "gdbus") if not shutil.which(t)]
        if missing:
            if os.environ.get("CI"):
                pytest.fail(f"the ModemManager test needs {missing} (modemmanager, dbus, libglib2.0-bin)")
            pytest.skip(f"missing {missing}")
        self.procs = []
        self.dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                                     stdout=subprocess.PIPE, text=True)
        self.procs.append(self.dbus)
        self.address = self.dbus.stdout.readline().strip()
        self.env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.fifo = tmp / "inject.fifo"
        self.log = tmp / "modem.log"
        sock = tmp / "mm.sock"
        self.procs.append(subprocess.Popen(
            [sys.executable, str(MODEM / "fake_modem.py"), f"unix:{sock}", str(self.fifo),
             str(MODEM / "mm" / "canned.txt")],
            stderr=self.log.open("w"), env={**self.env, "FAKE_MODEM_OPERATOR": "00101,Fake Telecom"}))
        wait_for(lambda: sock.exists(), 10, "the fake modem's socket")
        self.mm_log = tmp / "mm.log"
        self.procs.append(subprocess.Popen(
            ["ModemManager", "--test-session", "--test-enable", "--test-no-udev", "--log-level=DEBUG"],
            stdout=self.mm_log.open("w"), stderr=subprocess.STDOUT, env=self.env))

        def profile_set():
            r = subprocess.run(
                ["gdbus", "call", "--session", "--dest", "org.freedesktop.ModemManager1",
                 "--object-path", "/org/freedesktop/ModemManager1",
                 "--method", "org.freedesktop.ModemManager1.Test.SetProfile",
                 "fake0", "generic", f"['{sock}']"],
                env=self.env, capture_output=True, text=True)
            return r.returncode == 0

        wait_for(profile_set, 20, "ModemManager's Test.SetProfile")

    def inject(self, pdu):
        with open(self.fifo, "w") as f:
            f.write(pdu + "\n")

    def text(self):
        return self.log.read_text()

    def stop(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait(10)


def test_a_trigger_through_modemmanager(agent, tmp_path):
    mm = ModemManagerRig(tmp_path)
    srv = TestServer()
    try:
        a = agent(
            extra=(f'[modem]\nbackend = "modemmanager"\nbus = "session"\nenable = true\n'
                   f'status_interval = 5\n[sms]\nallow = ["{OPERATOR_PHONE}"]\n'),
            servers=sms_server(srv, "UQS", "queue_timeout = 2\n"),
        ).start(env={"DBUS_SESSION_BUS_ADDRESS": mm.address})
        srv.wait_registered(EP)
        try:
            wait_for(lambda: "ready" in (a.status_json().get("modem") or ""), 90, "ModemManager's modem ready")
        except AssertionError:
            raise AssertionError(a.status_json().get("modem") + "\n" + mm.mm_log.read_text()[-3000:]) from None
        wait_for(lambda: "operator Fake Telecom" in a.status_json()["modem"], 20, "the operator")
        st = a.status_json()["modem"]
        assert st.startswith("modemmanager /org/freedesktop/ModemManager1/Modem/"), st
        # The radio resources of /4 from ModemManager: signal, cell, MCC/MNC.
        wait_for(lambda: srv.read(EP, "/4/0/8").code == Code.CONTENT, 15, "the cell id in /4/0/8")
        assert int(srv.read(EP, "/4/0/10").payload) == 1 and int(srv.read(EP, "/4/0/9").payload) == 1
        assert -113 <= int(srv.read(EP, "/4/0/2").payload) <= -51
        srv.wait_for(lambda: "asleep" in a.status_json()["servers"][0]["state"], 15, "queue-mode sleep")
        n = updates(srv)
        mm.inject(deliver_pdu(SERVER_NUMBER, coap(Code.POST, ("1", "0", "8"), mid=0x4242)))
        srv.wait_for(lambda: updates(srv) > n, 30, "the Update the SMS triggered")
        # The answer goes out through ModemManager's Messaging (AT+CMGS on the modem).
        wait_for(lambda: "<Ctrl-Z>" in mm.text(), 30, "the SMS answer")
        line = next(l for l in mm.text().splitlines() if "<Ctrl-Z>" in l)
        ack = Message.decode(submit_user_data(line.split("<< ", 1)[1].strip("'\"").replace("<Ctrl-Z>", "")))
        assert ack.code == Code.CHANGED and ack.mid == 0x4242, ack
        # A stranger, through the same backend: refused.
        mm.inject(deliver_pdu(STRANGER, coap(Code.POST, ("1", "0", "8"), mid=0x4243)))
        wait_for(lambda: any(STRANGER in line and "refused" in line for line in sms_lines(a)), 30,
                 "the stranger refused")
        a.stop()
    finally:
        srv.close()
        mm.stop()
