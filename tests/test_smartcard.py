"""`lwgate smartcard dump` on the real PC/SC stack: pcscd + vpcd + the virtual UICC
of tests/fixtures/uicc (LwM2M 1.0 Appendix G), as a field engineer would use it.

Each test runs its own pcscd, private to it, so a pcscd already running on the
machine (the system's, or another test run's) neither stops the suite nor gets in
its way: pcscd runs in a mount namespace of its own where /run/pcscd is a
directory of the test (its socket and pid file land there; pcscd 1.9.9 has the
socket path compiled in), clients reach it through PCSCLITE_CSOCK_NAME (which
libpcsclite, hence lwgate and opensc-tool, honours), and vpcd listens on a free
port of its own (CHANNELID) instead of 35963. Without mount namespaces (not
root) it falls back to the machine's socket when no other pcscd is running; if
it cannot run at all, it fails under CI and says why elsewhere."""

import functools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT

UICC = ROOT / "tests" / "fixtures" / "uicc"
PCSCD = "/usr/sbin/pcscd"
VPCD = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
# In pcscd's own mount namespace: its /run/pcscd is the lab's run directory.
PRIVATE_PCSCD = 'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && exec "$2" --foreground --debug --apdu -c "$3"'


@functools.cache
def private_namespaces() -> bool:
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return r.returncode == 0


def pcscd_running() -> bool:
    """Whether a pcscd runs here, outside our labs (zombies waiting to be reaped do not count)."""
    pids = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            return True
    return False


def free_port_pair() -> int:
    """A TCP port P with P+1 free too: vpcd listens on both (two slots)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("", p + 1))
                except OSError:
                    continue
            return p
    raise AssertionError("no two consecutive free TCP ports for vpcd")


def wait_until(cond, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s" + (f"; log:\n{log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.05)


class Lab:
    """One pcscd with vpcd and the virtual UICC (tests/fixtures/uicc/uicc_card.py),
    private to a test (see the module docstring)."""

    def __init__(self, tmp, private):
        self.dir = tmp / "uicc"
        self.run = self.dir / "run"
        self.conf = self.dir / "reader.conf.d"
        self.run.mkdir(parents=True)
        self.conf.mkdir()
        self.private = private
        self.socket = self.run / "pcscd.comm" if private else Path("/run/pcscd/pcscd.comm")
        self.port = free_port_pair()
        (self.conf / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{self.port:04X}\n'
            f"LIBPATH {VPCD}\nCHANNELID 0x{self.port:04X}\n"
        )
        self.pcscd = None
        self.card = None

    def card_present(self):
        return subprocess.run(["opensc-tool", "-r", "0", "-a"], capture_output=True, timeout=10).returncode == 0

    def start(self, *card_args):
        self.stop()
        log = self.dir / "pcscd.log"
        with open(log, "w") as out:
            if self.private:
                cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_PCSCD, "sh",
                       str(self.run), PCSCD, str(self.conf)]
            else:
                cmd = [PCSCD, "--foreground", "--debug", "--apdu", "-c", str(self.conf)]
            self.pcscd = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            assert self.pcscd.poll() is None, f"pcscd exited {self.pcscd.returncode}:\n{log.read_text()[-3000:]}"
            return self.socket.exists() and "daemon ready" in log.read_text()

        wait_until(ready, 10, "pcscd ready", log)
        card_log = self.dir / "card.log"
        with open(card_log, "w") as out:
            self.card = subprocess.Popen(
                ["/usr/bin/python3", str(UICC / "uicc_card.py"), "--port", str(self.port), *card_args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(self.card_present, 10, "card present in Virtual PCD 00 00", card_log)
        return self

    def _end(self, proc):
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self):
        self._end(self.card)
        self._end(self.pcscd)
        self.card = self.pcscd = None

    def remove_card(self):
        self._end(self.card)
        wait_until(lambda: not self.card_present(), 10, "pcscd to see the card gone")

    def change_card_in_place(self):
        """SIGUSR1: the card's lifetime + 1, with no PC/SC event."""
        os.kill(self.card.pid, signal.SIGUSR1)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    for tool in (PCSCD, "/usr/bin/opensc-tool", VPCD, "/usr/bin/python3"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} missing: scripts/setup installs the PC/SC stack")
    private = private_namespaces()
    if not private and pcscd_running():
        why = ("another pcscd is running and this machine gives no private mount namespace "
               "(`unshare --mount` failed: not root?) to run a second one beside it")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    lab = Lab(tmp_path, private)
    if private:
        # lwgate, opensc-tool and every other libpcsclite client of this test.
        monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(lab.socket))
    yield lab
    lab.stop()


def dump(lwgate, *args):
    return subprocess.run(
        [str(lwgate), "smartcard", "dump", "--config", "/nonexistent/lwgate.toml", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_dump_shows_the_bootstrap_data(lwgate, lab):
    lab.start()
    r = dump(lwgate)
    assert r.returncode == 0, r.stderr
    assert "reader:      Virtual PCD 00 00" in r.stdout
    assert "ICCID:       8988211000000012345" in r.stdout
    assert "(opaqueDO)" in r.stdout
    assert "/0/0/0       LwM2M Server URI             coap://127.0.0.1:5683" in r.stdout
    assert "/1/0/1       Lifetime                     300" in r.stdout


def test_both_dodf_forms(lwgate, lab):
    lab.start("--dodf", "oid", "--lifetime", "77")
    r = dump(lwgate)
    assert r.returncode == 0, r.stderr
    assert "(oidDO)" in r.stdout and "Lifetime                     77" in r.stdout


def test_large_file_read_in_chunks(lwgate, lab):
    lab.start("--big", "3000")
    r = dump(lwgate, "--trace")
    assert r.returncode == 0, r.stderr
    reads = [l for l in r.stdout.splitlines() if "READ BINARY EF LwM2M_Bootstrap" in l]
    assert len(reads) >= 12, f"{len(reads)} chunks for a ~3 KB file"
    # ">> CLA B0 P1 P2 Le": offsets advance by at most 256 bytes per READ BINARY.
    offsets = [int(l.split()[3] + l.split()[4], 16) for l in reads]
    assert offsets == sorted(offsets) and all(0 < b - a <= 256 for a, b in zip(offsets, offsets[1:])), offsets
    assert "(3000 chars)" in r.stdout and "object /3 Device v1.1" in r.stdout


def test_pin_protected_file(lwgate, lab):
    lab.start("--pin", "1234")
    r = dump(lwgate)
    assert r.returncode == 1 and "PIN-protected and no PIN is configured" in r.stderr
    r = dump(lwgate, "--pin", "0000")
    assert r.returncode == 1 and "2 tries left; not retried" in r.stderr, r.stderr
    r = dump(lwgate, "--pin", "1234", "--trace")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("VERIFY PIN") == 1, "one VERIFY, no retry"
    assert "PIN-protected" in r.stdout


def test_pin_from_a_file(lwgate, lab, tmp_path):
    lab.start("--pin", "4321")
    f = tmp_path / "uicc-pin"
    f.write_text("4321\n")
    r = dump(lwgate, "--pin-file", str(f))
    assert r.returncode == 0, r.stderr


def test_no_card_and_no_pcscd_are_clear_errors(lwgate, lab):
    lab.start()
    lab.remove_card()
    r = dump(lwgate)
    assert r.returncode == 1 and "no card in Virtual PCD" in r.stderr, r.stderr
    lab.stop()
    r = dump(lwgate)
    assert r.returncode == 1 and "is pcscd running" in r.stderr, r.stderr


# ---- bootstrap from the card, as the daemon does it -------------------------------

from lwm2m_server import TestServer  # noqa: E402

CARD_EP = "test-gw"


def card_agent(agent, factory_uri, extra=""):
    return agent(
        extra=f"[bootstrap.smartcard]\nenabled = true\n{extra}",
        servers=f'[[server]]\nuri = "{factory_uri}"\nssid = 9\nlifetime = 300\n',
    )


def test_bootstrap_from_the_card_and_card_removal(agent, lab):
    srv, unused = TestServer(), TestServer()
    try:
        lab.start("--uri", srv.uri, "--ssid", "202", "--lifetime", "20")
        a = card_agent(agent, unused.uri).start()
        reg = srv.wait_registered(CARD_EP)
        assert reg.query["lt"] == "20", "lifetime from the card"
        st = a.status_json()
        assert st["bootstrap"].startswith("smartcard (Virtual PCD 00 00"), st["bootstrap"]
        assert [s["ssid"] for s in st["servers"]] == [202]
        assert not unused.registrations, "the factory table is not used"
        # The card goes; at the next Update (20 s lifetime: within ~10 s) the account goes too.
        lab.remove_card()
        srv.wait_for(lambda: reg.deregistered, 25, "de-registration after card removal")
        st = a.status_json()
        assert st["bootstrap"] == "smartcard removed: no server account"
        assert st["servers"][0]["state"] == "stopped"
        assert a.proc.poll() is None, "still running"
        assert a.stop() == 0
    finally:
        srv.close()
        unused.close()


def test_card_content_changed_in_place_is_applied_at_the_next_update(agent, lab):
    srv, unused = TestServer(), TestServer()
    try:
        lab.start("--uri", srv.uri, "--ssid", "202", "--lifetime", "20", "--dodf", "oid")
        a = card_agent(agent, unused.uri).start()
        reg = srv.wait_registered(CARD_EP)
        assert reg.query["lt"] == "20"
        lab.change_card_in_place()
        srv.wait_for(lambda: srv.registrations[CARD_EP].query.get("lt") == "21", 30, "re-registration with lt=21")
        assert ("deregister", CARD_EP) in srv.events, "the old account de-registered first"
        assert a.stop() == 0
    finally:
        srv.close()
        unused.close()


def test_pin_protected_card_bootstraps_with_the_configured_pin(agent, lab):
    srv, unused = TestServer(), TestServer()
    try:
        lab.start("--uri", srv.uri, "--pin", "2468")
        a = card_agent(agent, unused.uri, extra='pin = "2468"\n').start()
        srv.wait_registered(CARD_EP)
        assert a.stop() == 0
    finally:
        srv.close()
        unused.close()


def test_wrong_pin_or_no_pcscd_falls_back_to_the_factory_accounts(agent, lab, lwgate):
    factory = TestServer()
    try:
        lab.start("--pin", "2468")
        a = card_agent(agent, factory.uri, extra='pin = "1111"\n').start()
        factory.wait_registered(CARD_EP)
        st = a.status_json()
        assert st["bootstrap"].startswith("factory") and "2 tries left" in st["smartcard_error"], st
        assert a.stop() == 0
        # Restarted with the same wrong PIN: not presented again (a reboot loop must
        # not block the SIM).
        a.start()
        assert "rejected the configured PIN before" in a.status_json()["smartcard_error"]
        assert a.stop() == 0
        r = dump(lwgate, "--pin", "0000")
        assert "1 tries left" in r.stderr, "lwgate used one try in all: " + r.stderr
        assert dump(lwgate, "--pin", "2468").returncode == 0, "the right PIN still works"
        lab.stop()
        a.start()
        factory.wait_for(lambda: a.status_json()["smartcard_error"], 20, "fallback")
        assert "pcscd" in a.status_json()["smartcard_error"]
        assert a.stop() == 0
    finally:
        factory.close()


def test_no_card_at_start_falls_back_to_the_factory_accounts(agent, lab):
    factory = TestServer()
    try:
        lab.start()
        lab.remove_card()
        a = card_agent(agent, factory.uri).start()
        factory.wait_registered(CARD_EP)
        st = a.status_json()
        assert st["bootstrap"].startswith("factory") and "no card in" in st["smartcard_error"], st
        assert a.stop() == 0
    finally:
        factory.close()


def test_a_card_provisioned_dtls_psk_account_registers_over_dtls(agent, lab, lwgate):
    """The card's Security instance is PSK (mode 0) for a coaps:// server behind
    the GnuTLS relay: lwgate registers over DTLS with the card's identity and key,
    and neither `smartcard dump`, `lwgate status` nor the journal shows the key."""
    from dtls_peer import DtlsPeer

    key = bytes(range(0xA0, 0xB0))
    srv, unused = TestServer(), TestServer()
    try:
        with DtlsPeer(srv.port, psk={"card-id": key}) as relay:
            lab.start("--uri", relay.uri, "--ssid", "203", "--psk-identity", "card-id", "--psk-key", key.hex())
            out = dump(lwgate)
            assert out.returncode == 0, out.stderr
            assert '"card-id" (7 bytes)' in out.stdout, out.stdout
            assert "<16 bytes, masked>" in out.stdout and key.hex() not in out.stdout.replace(" ", "").lower(), out.stdout
            a = card_agent(agent, unused.uri).start()
            hs = relay.wait_event("handshake", ok=True, timeout=20)
            assert hs["psk_identity"] == "card-id", hs
            srv.wait_registered(CARD_EP, 20)
            row = a.status_json()["servers"][0]
            assert row["ssid"] == 203 and row["security"].startswith("psk over DTLS: established"), row
            assert key.hex() not in a.log.read_text()
            assert a.stop() == 0
    finally:
        srv.close()
        unused.close()
