"""lwgate over DTLS (coaps://) as an operator meets it: the aiocoap test LwM2M
server behind the GnuTLS relay of tests/dtls_peer (a DTLS stack other than
lwgate's OpenSSL), PSK or certificates from lwgate.toml. Registration, reads and observation go
through the session; a wrong key fails at our handshake deadline with a reason;
lost handshake packets are retransmitted; a server that lost its sessions gets a
new handshake; after a kill -9 the registration goes on through a new session."""

import time

from aiocoap import Code

from conftest import wait_for
from dtls_peer import DtlsPeer
from lwm2m_server import SENML_JSON, TestServer

EP = "test-gw"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def psk_server(uri, key=KEY, identity=EP, extra=""):
    return (
        f'[[server]]\nuri = "{uri}"\nssid = 101\nlifetime = 300\n'
        f'security = "psk"\npsk_identity = "{identity}"\npsk_key = "{key.hex()}"\n'
        f"handshake_timeout = 5\n{extra}"
    )


def registered_and_observing(srv):
    """Waits for the registration, then observes /3/0/13 every second."""
    srv.wait_registered(EP, 20)
    srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=1")
    _, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_JSON)
    srv.wait_for(lambda: len(notes) >= 1, 10, "a notification")
    return notes, cancel


def server_row(a):
    return a.status_json()["servers"][0]


def test_registers_reads_and_observes_over_dtls_psk(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: KEY}) as relay:
        a = agent(servers=psk_server(relay.uri)).start()
        hs = relay.wait_event("handshake", ok=True, timeout=20)
        assert hs["psk_identity"] == EP, hs
        reg = srv.wait_registered(EP, 20)
        assert reg.remote.sockaddr[1] == hs["upstream_port"], "the registration came through the relay"
        assert srv.read(EP, "/3/0/0").code == Code.CONTENT
        first, notes, cancel = srv.observe(EP, "/3/0/13", accept=SENML_JSON)
        srv.write_attributes(EP, "/3/0/13", "pmin=1", "pmax=1")
        srv.wait_for(lambda: len(notes) >= 2, 15, "notifications over DTLS")
        cancel()
        row = server_row(a)
        assert row["state"] == "registered", row
        assert row["security"].startswith("psk over DTLS: established (DTLSv1.2 "), row
        out = a.cli("status", "--config", str(a.config)).stdout
        assert "security: psk over DTLS: established" in out, out
        assert KEY.hex() not in a.log.read_text() and KEY.hex() not in out
        a.stop()
        assert reg.deregistered, "De-register went over DTLS too"


def test_a_wrong_key_fails_within_the_deadline_and_is_retried_with_back_off(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: bytes(16)}) as relay:
        a = agent(servers=psk_server(relay.uri)).start()
        t0 = time.monotonic()
        ev = relay.wait_event("handshake", ok=False, timeout=20)
        assert ev.get("alert_sent") or ev.get("error"), ev
        row = wait_for(lambda: (lambda r: r if r["last_error"] and "DTLS" in r["last_error"] else None)(server_row(a)), 20, "the failure in lwgate status")
        took = time.monotonic() - t0
        assert took < 20, f"the failure took {took:.1f} s"
        assert "retrying" in row["state"], row
        assert KEY.hex() not in row["last_error"], row
        # The daemon goes on answering meanwhile, and tries again on its back-off.
        n = len([e for e in relay.events if e.get("event") == "handshake"])
        wait_for(lambda: len([e for e in relay.events if e.get("event") == "handshake"]) > n, 30, "a second attempt")
        assert not srv.registrations
        a.stop()


def test_lost_handshake_packets_are_retransmitted(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: KEY}, drop_first=2) as relay:
        a = agent(servers=psk_server(relay.uri)).start()
        srv.wait_registered(EP, 20)
        assert any(e.get("event") == "drop" for e in relay.events), relay.events
        a.stop()


def test_a_server_that_lost_its_sessions_gets_a_new_handshake(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: KEY}) as relay:
        a = agent(servers=psk_server(relay.uri, extra="ack_timeout = 1\n")).start()
        notes, cancel = registered_and_observing(srv)
        mark = relay.mark()
        # Every session and key forgotten, as a restarted server: lwgate's records
        # now go unanswered, and after a few seconds of that it handshakes again.
        relay.restart()
        hs = relay.wait_event("handshake", ok=True, since=mark, timeout=40)
        assert not hs.get("resumed"), hs
        assert "new handshake" in a.log.read_text()
        # Traffic flows through the new session (the relay gives it a new upstream
        # port, so the old observation's notifications are no longer the server's).
        r = a.cli("send", "--config", str(a.config), "/3/0/0", check=False)
        assert r.returncode == 0, r.stderr
        srv.wait_for(lambda: len(srv.sent) == 1, 20, "a Send through the new session")
        cancel()
        a.stop()


def test_kill_9_on_dtls_keeps_the_registration_and_handshakes_again(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: KEY}) as relay:
        a = agent(servers=psk_server(relay.uri)).start()
        reg = srv.wait_registered(EP, 20)
        # The server answered; wait until lwgate has taken (and stored) the answer,
        # or the kill may land before it and the restart rightly registers anew.
        wait_for(lambda: server_row(a)["state"] == "registered", 10, "registered in lwgate status")
        a.kill()
        mark = relay.mark()
        a.start()
        relay.wait_event("handshake", ok=True, since=mark, timeout=20)
        # The restarted agent knows its registration: an Update (from its new
        # address, through the new session), not a new Register.
        srv.wait_for(lambda: len(reg.updates) >= 1, 20, "the Registration Update")
        assert [e for e in srv.events if e[0] == "register"] == [("register", EP)], srv.events
        assert srv.read(EP, "/3/0/0").code == Code.CONTENT
        a.stop()


def test_notifications_are_stored_through_a_dtls_outage_and_replayed(agent):
    srv = TestServer()
    with DtlsPeer(srv.port, psk={EP: KEY}) as relay:
        a = agent(servers=psk_server(relay.uri, extra="ack_timeout = 1\nmax_retransmit = 1\n")).start()
        notes, cancel = registered_and_observing(srv)
        relay.blackout(12)
        wait_for(lambda: server_row(a)["queued"] >= 3, 20, "notifications stored during the outage")
        t_out = time.time()
        # Back: a new handshake if the old session went stale, then the stored
        # values arrive (a Send or replayed notifications, with their times).
        wait_for(lambda: server_row(a)["queued"] == 0, 60, "the replay")
        assert server_row(a)["state"] == "registered", server_row(a)
        assert server_row(a)["security"].startswith("psk over DTLS: established"), server_row(a)
        assert time.time() - t_out < 60
        cancel()
        a.stop()


def make_pki(d, name="ca"):
    """An ECDSA P-256 CA with a server certificate (localhost, 127.0.0.1) and a
    client certificate (CN = the endpoint), made by the openssl CLI."""
    import subprocess

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
    run("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN=test {name}", "-days", "2", "-out", f"{name}.pem")
    for who, subj, ext in (
        ("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("client", f"/CN={EP}", "extendedKeyUsage=clientAuth"),
    ):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{who}.key")
        run("req", "-new", "-key", f"{who}.key", "-subj", subj, "-out", f"{who}.csr")
        (d / f"{who}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", f"{name}.pem", "-CAkey", f"{name}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem")
    (d / "client.key").chmod(0o600)
    return d


def cert_server(uri, d, trust):
    return (
        f'[[server]]\nuri = "{uri}"\nssid = 101\nlifetime = 300\nsecurity = "certificate"\n'
        f'certificate = "{d / "client.pem"}"\nprivate_key = "{d / "client.key"}"\n{trust}\nhandshake_timeout = 5\n'
    )


def test_certificates_both_ways_checked_against_a_ca(agent, tmp_path):
    d = make_pki(tmp_path)
    srv = TestServer()
    with DtlsPeer(srv.port, cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem", client_cert="require") as relay:
        a = agent(servers=cert_server(relay.uri, d, f'ca_file = "{d / "ca.pem"}"')).start()
        hs = relay.wait_event("handshake", ok=True, timeout=20)
        assert f"CN={EP}" in hs.get("peer_dn", ""), hs
        assert "ECDHE_ECDSA" in hs["suite"], hs
        srv.wait_registered(EP, 20)
        assert srv.read(EP, "/3/0/0").code == Code.CONTENT
        assert server_row(a)["security"].startswith("certificate over DTLS: established"), server_row(a)
        a.stop()


def test_a_pinned_server_certificate(agent, tmp_path):
    d = make_pki(tmp_path)
    srv = TestServer()
    with DtlsPeer(srv.port, cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem", client_cert="require") as relay:
        a = agent(servers=cert_server(relay.uri, d, f'server_certificate = "{d / "server.pem"}"')).start()
        srv.wait_registered(EP, 20)
        a.stop()


def test_an_untrusted_server_certificate_is_refused_with_the_reason(agent, tmp_path):
    d = make_pki(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    make_pki(other, name="otherca")
    srv = TestServer()
    with DtlsPeer(srv.port, cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem", client_cert="require") as relay:
        a = agent(servers=cert_server(relay.uri, d, f'ca_file = "{other / "otherca.pem"}"')).start()
        row = wait_for(lambda: (lambda r: r if r["last_error"] and "DTLS" in r["last_error"] else None)(server_row(a)), 20, "the failure in lwgate status")
        assert "server certificate not trusted" in row["last_error"], row
        assert not srv.registrations
        a.stop()


def test_bootstrap_over_dtls_provisions_a_dtls_server_account(agent):
    """A bootstrap server behind one DTLS relay (identity bs-id) gives the gateway a
    PSK account on a server behind another; the gateway registers there over its
    own session, and after a restart again, without bootstrapping again."""
    from lwm2m_formats import tlv_encode
    from lwm2m_server import TLV

    bs, dm = TestServer(), TestServer()
    bs_key, dm_key = bytes(range(16)), bytes(range(16, 32))
    with DtlsPeer(bs.port, psk={"bs-id": bs_key}) as bs_relay, DtlsPeer(dm.port, psk={EP: dm_key}) as dm_relay:
        a = agent(
            extra=(f'[bootstrap.server]\nuri = "{bs_relay.uri}"\nsecurity = "psk"\n'
                   f'psk_identity = "bs-id"\npsk_key = "{bs_key.hex()}"\nhandshake_timeout = 5\n'),
            servers="",
        ).start()
        bs.wait_for(lambda: EP in bs.bs_clients, 20, "Bootstrap-Request over DTLS")
        assert bs_relay.wait_event("handshake", ok=True)["psk_identity"] == "bs-id"
        assert bs.bs(EP, Code.DELETE, "/").code == Code.DELETED

        def security(uri, mode):
            body = (tlv_encode(3, 0, uri.encode()) + tlv_encode(3, 1, b"\x00") + tlv_encode(3, 2, bytes([mode]))
                    + tlv_encode(3, 3, EP.encode()) + tlv_encode(3, 5, dm_key) + tlv_encode(3, 10, bytes([101])))
            return tlv_encode(0, 1, body)

        server = tlv_encode(0, 0, tlv_encode(3, 0, bytes([101])) + tlv_encode(3, 1, bytes([60])) + tlv_encode(3, 7, b"U"))
        assert bs.bs(EP, Code.PUT, "/1", server, content_format=TLV).code == Code.CHANGED
        # coaps:// with NoSec does not fit: Finish is refused, with the reason.
        assert bs.bs(EP, Code.PUT, "/0", security(dm_relay.uri, 3), content_format=TLV).code == Code.CHANGED
        r = bs.bs(EP, Code.POST, "/bs")
        assert r.code == Code.NOT_ACCEPTABLE and b"NoSec" in r.payload, (r.code, r.payload)
        assert bs.bs(EP, Code.PUT, "/0", security(dm_relay.uri, 0), content_format=TLV).code == Code.CHANGED
        assert bs.bs(EP, Code.POST, "/bs").code == Code.CHANGED
        reg = dm.wait_registered(EP, 30)
        assert dm_relay.wait_event("handshake", ok=True)["psk_identity"] == EP
        assert server_row(a)["security"].startswith("psk over DTLS: established"), server_row(a)
        assert a.stop() == 0
        mark = dm_relay.mark()
        a.start()
        dm_relay.wait_event("handshake", ok=True, since=mark, timeout=20)
        dm.wait_for(lambda: len(reg.updates) + dm.events.count(("register", EP)) >= 2, 30, "registered again")
        assert a.status_json()["bootstrap"].startswith("bootstrap server (stored")
        a.stop()
    bs.close()
    dm.close()


def test_a_wrong_sni_is_refused_naming_the_name(agent, tmp_path):
    """The server's certificate is checked against the name sent as SNI (/0/x/14)."""
    d = make_pki(tmp_path)
    srv = TestServer()
    with DtlsPeer(srv.port, cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem", client_cert="require") as relay:
        trust = f'ca_file = "{d / "ca.pem"}"\nsni = "lwm2m.wrong.example"'
        a = agent(servers=cert_server(relay.uri, d, trust)).start()
        row = wait_for(lambda: (lambda r: r if r["last_error"] and "DTLS" in r["last_error"] else None)(server_row(a)), 20, "the failure in lwgate status")
        assert 'server certificate not valid for "lwm2m.wrong.example"' in row["last_error"], row
        assert "lwm2m.wrong.example" in a.log.read_text()
        assert not srv.registrations
        a.stop()
    srv.close()


def test_the_alert_of_a_failed_handshake_is_kept_in_1_x_11(agent, tmp_path):
    """The relay refuses our certificate (issued by a CA it does not know) with a
    fatal alert; once a server that trusts us takes its place on the same port,
    the registered server reads that alert's code from /1/0/11."""
    d = make_pki(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    make_pki(other, name="otherca")
    srv = TestServer()
    refusing = DtlsPeer(srv.port, cert=d / "server.pem", key=d / "server.key", ca=other / "otherca.pem", client_cert="require")
    port = refusing.port
    a = agent(servers=cert_server(refusing.uri, d, f'ca_file = "{d / "ca.pem"}"')).start()
    ev = refusing.wait_event("handshake", ok=False, timeout=20)
    row = wait_for(lambda: (lambda r: r if r["last_error"] and "DTLS" in r["last_error"] else None)(server_row(a)), 20, "the failure")
    assert "server rejected our certificate (alert: " in row["last_error"], (row, ev)
    alert_name = row["last_error"].rsplit("(alert: ", 1)[1].rstrip(")")
    codes = {"bad_certificate": 42, "unsupported_certificate": 43, "certificate_unknown": 46, "unknown_ca": 48, "access_denied": 49}
    assert alert_name in codes, row
    refusing.close()
    with DtlsPeer(srv.port, listen=f"127.0.0.1:{port}", cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem", client_cert="require"):
        srv.wait_registered(EP, 60)
        r = srv.read(EP, "/1/0/11")
        assert r.code == Code.CONTENT and r.payload == str(codes[alert_name]).encode(), (r.code, r.payload)
        a.stop()
    srv.close()


def rpk_binary():
    """A build that can do raw public keys: OpenSSL >= 3.2, which on Debian 12
    means `--features vendored-openssl` (scripts/test builds it into target/rpk)."""
    import os
    from pathlib import Path

    import pytest

    p = os.environ.get("LWGATE_RPK_BIN")
    if p and Path(p).exists():
        return Path(p)
    if os.environ.get("CI"):
        pytest.fail("LWGATE_RPK_BIN is not set to an RPK build (scripts/test builds target/rpk/debug/lwgate)")
    pytest.skip("no RPK build: set LWGATE_RPK_BIN (cargo build -p lwgate --features vendored-openssl)")


def rpk_keys(d, name):
    import subprocess

    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key"], check=True, cwd=d)
    subprocess.run(["openssl", "pkey", "-in", f"{name}.key", "-pubout", "-out", f"{name}.pub"], check=True, cwd=d)
    (d / f"{name}.key").chmod(0o600)
    return d / f"{name}.key", d / f"{name}.pub"


def test_raw_public_keys_register_and_refuse_another_server_key(tmp_path):
    """Security Mode 1 against the GnuTLS relay, which accepts only our public
    key: registration and a read go through; then a server with a key other than
    the configured server_public_key is refused with the reason."""
    from conftest import Agent

    binary = rpk_binary()
    client_key, client_pub = rpk_keys(tmp_path, "client")
    server_key, server_pub = rpk_keys(tmp_path, "server")
    _, other_pub = rpk_keys(tmp_path, "other")

    def rpk_server(uri, pub):
        return (f'[[server]]\nuri = "{uri}"\nssid = 101\nlifetime = 300\nsecurity = "rpk"\n'
                f'private_key = "{client_key}"\nserver_public_key = "{pub}"\nhandshake_timeout = 5\n')

    srv = TestServer()
    made = []
    try:
        with DtlsPeer(srv.port, rpk_pub=server_pub, rpk_key=server_key, rpk_clients=[client_pub]) as relay:
            d1 = tmp_path / "a1"
            d1.mkdir()
            a = Agent(binary, d1, servers=rpk_server(relay.uri, server_pub))
            made.append(a)
            check = a.cli("check-config", "--config", str(a.config), check=False)
            assert check.returncode == 0, check.stdout + check.stderr
            a.start()
            hs = relay.wait_event("handshake", ok=True, timeout=20)
            assert "ECDHE_ECDSA" in hs["suite"], hs
            srv.wait_registered(EP, 20)
            assert srv.read(EP, "/3/0/0").code == Code.CONTENT
            assert server_row(a)["security"].startswith("rpk over DTLS: established"), server_row(a)
            a.stop()

            d2 = tmp_path / "a2"
            d2.mkdir()
            b = Agent(binary, d2, servers=rpk_server(relay.uri, other_pub))
            made.append(b)
            b.start()
            row = wait_for(lambda: (lambda r: r if r["last_error"] and "DTLS" in r["last_error"] else None)(server_row(b)), 20, "the failure")
            assert "server's raw public key is not the configured server_public_key" in row["last_error"], row
            b.stop()
    finally:
        for x in made:
            x.kill()
        srv.close()


def test_queue_mode_wakes_with_an_abbreviated_handshake(agent):
    """After queue-mode sleep the session is resumed (the NAT mapping of a sleeper
    has likely expired): the relay sees a resumed handshake, the wake-up Update
    and a request in the listening window go through it."""
    srv = TestServer()
    try:
        with DtlsPeer(srv.port, psk={EP: KEY}) as relay:
            a = agent(servers=psk_server(relay.uri, extra='binding = "UQ"\nqueue_timeout = 2\n')).start()
            reg = srv.wait_registered(EP, 20)
            assert reg.query.get("Q") == "", reg.query
            first = relay.wait_event("handshake", ok=True, timeout=20)
            assert not first.get("resumed"), first
            srv.wait_for(lambda: "asleep" in server_row(a)["state"], 10, "queue mode sleep")
            mark = relay.mark()
            # A Send wakes the client: an abbreviated handshake, then the Update
            # and the Send, and the server's request in the listening window.
            assert a.cli("send", "--config", str(a.config), "/3/0/0", check=False).returncode == 0
            hs = relay.wait_event("handshake", ok=True, since=mark, timeout=20)
            assert hs.get("resumed"), relay.dump()
            srv.wait_for(lambda: len(reg.updates) >= 1 and len(srv.sent) >= 1, 20, "the wake-up Update and the Send")
            assert srv.read(EP, "/3/0/0", timeout=5).code == Code.CONTENT
            assert "resuming the DTLS session" in a.log.read_text()
            assert ", resumed" in server_row(a)["security"], server_row(a)
            a.stop()
    finally:
        srv.close()
