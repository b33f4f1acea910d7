"""`lwgate smartcard dump` on the real PC/SC stack: pcscd + vpcd + the virtual UICC
of tests/fixtures/uicc (LwM2M 1.0 Appendix G), as a field engineer would use it."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT

UICC = ROOT / "tests" / "fixtures" / "uicc"


class Lab:
    def __init__(self, tmp):
        self.dir = tmp / "uicc"
        self.env = {**os.environ, "LAB": str(self.dir)}

    def start(self, *args):
        self.stop()
        r = subprocess.run(["sh", str(UICC / "start.sh"), *args], env=self.env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        return self

    def stop(self):
        subprocess.run(["sh", str(UICC / "stop.sh")], env=self.env, capture_output=True, timeout=30)
        # pcscd's socket is fixed: wait until the old daemon is gone before a new one.
        for _ in range(100):
            if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode != 0:
                break
            time.sleep(0.05)

    def remove_card(self):
        pid = int((self.dir / "card.pid").read_text())
        os.kill(pid, 15)
        time.sleep(0.8)


@pytest.fixture
def lab(tmp_path):
    for tool in ("/usr/sbin/pcscd", "/usr/bin/opensc-tool"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} missing: scripts/setup installs the PC/SC stack")
    if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0 and not os.environ.get("CI"):
        pytest.skip("a pcscd is already running here (only one per machine); CI starts its own")
    lab = Lab(tmp_path)
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
        os.kill(int((lab.dir / "card.pid").read_text()), 10)  # SIGUSR1: lifetime + 1, no PC/SC event
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
