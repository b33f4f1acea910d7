"""The GnuTLS DTLS relay (tests/dtls_peer) proven with clients that are not lwgate.

The relay puts the aiocoap LwM2M test server behind DTLS 1.2 on GnuTLS, so
lwgate's OpenSSL client is tested against another stack. Here it is checked with
libcoap's coap-client (both its OpenSSL and its GnuTLS build) and `openssl
s_client`: PSK, certificates with mutual authentication, raw public keys,
cookie exchange, resumption, its fault injection and its event lines. Every
tool it needs is required: a missing one fails the test, naming the package.
"""

import hashlib
import os
import random
import re
import select
import shutil
import socket
import subprocess
import time

import pytest
from aiocoap import Code, Message
from aiocoap.numbers.types import Type
from dtls_peer import DtlsPeer, build
from lwm2m_server import TestServer, _free_udp_port

PACKAGES = {
    "coap-client-openssl": "libcoap3-bin",
    "coap-client-gnutls": "libcoap3-bin",
    "coap-server-notls": "libcoap3-bin",
    "openssl": "openssl",
}
FLAVORS = ["openssl", "gnutls"]  # coap-client-openssl, coap-client-gnutls
PSK_ID, PSK_KEY = "urn:imei:490154203237518", b"lwm2m-psk-secret"  # an identity with colons
PSK_CCM8 = "-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8"  # LwM2M's mandatory PSK suite only
ECDSA_CCM8 = "-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM-8"  # and its certificate one


def need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} not found: apt-get install {PACKAGES.get(tool, tool)}")
    return path


@pytest.fixture(scope="module", autouse=True)
def relay_built():
    return build()


@pytest.fixture
def server():
    srv = TestServer()
    yield srv
    srv.close()


@pytest.fixture
def peers():
    made = []

    def make(*args, **kw):
        p = DtlsPeer(*args, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def coap_client(flavor, *args, timeout=30):
    """Runs coap-client-<flavor>; returns its whole output (-v 6: PDUs too)."""
    exe = need(f"coap-client-{flavor}")
    r = subprocess.run([exe, "-B", "8", "-v", "6", *args], capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


def register(flavor, uri, ep, *security, **kw):
    return coap_client(
        flavor, "-m", "post", "-t", "40", "-e", "</1/0>,</3/0>", *security, f"{uri}/rd?ep={ep}&lt=60", **kw
    )


def psk_args(identity=PSK_ID, key=PSK_KEY):
    return ["-u", identity, "-k", key.decode()]  # libcoap 4.3.1 takes the key as text


def openssl(*args, cwd):
    r = subprocess.run([need("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA with server and client certificates, and a second CA with a
    client it signed (untrusted by the relay); ECDSA P-256 throughout. Plus raw
    public key pairs. Returns the directory."""
    d = tmp_path_factory.mktemp("pki")

    def key(name):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=d)

    def ca(name, cn):
        key(name)
        openssl("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-days", "2",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                "-out", f"{name}.pem", cwd=d)

    def leaf(name, cn, by):
        key(name)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{by}.pem", "-CAkey", f"{by}.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)

    ca("ca", "lwgate test CA")
    leaf("server", "dtls-relay", "ca")
    leaf("client", "test-ep-cert", "ca")
    ca("rogue-ca", "rogue CA")
    leaf("rogue", "rogue-ep", "rogue-ca")
    for name in ("srv-rpk", "cli-rpk", "other-rpk"):
        key(name)
        openssl("pkey", "-in", f"{name}.key", "-pubout", "-out", f"{name}.pub", cwd=d)
        # libcoap's -M wants the public and the private key in one file.
        (d / f"{name}.both").write_text((d / f"{name}.pub").read_text() + (d / f"{name}.key").read_text())
    return d


def spki_sha256(pub_pem):
    der = subprocess.run([need("openssl"), "pkey", "-pubin", "-in", str(pub_pem), "-outform", "DER"],
                         capture_output=True, timeout=30, check=True).stdout
    return hashlib.sha256(der).hexdigest()


# ---- PSK ---------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_psk_registration_through_relay(flavor, server, peers):
    peer = peers(server.port, psk={PSK_ID: PSK_KEY, "other": b"other-key"}, priority=PSK_CCM8)
    out = register(flavor, peer.uri, f"psk-{flavor}", *psk_args())
    assert "c:2.01" in out, out
    reg = server.wait_registered(f"psk-{flavor}", timeout=5)
    # Cookie exchange first, as a real server does; then the LwM2M PSK suite.
    assert peer.find("hello_verify"), peer.dump()
    hs = peer.wait_event("handshake", ok=True)
    assert hs["suite"] == "TLS_PSK_WITH_AES_128_CCM_8"
    assert hs["version"] == "DTLS1.2" and hs["resumed"] is False
    assert hs["psk_identity"] == PSK_ID and hs["psk_identity_known"] is True
    # The server sees the client on the relay's upstream socket for it.
    assert reg.remote.sockaddr[1] == hs["upstream_port"]
    assert hs["sni"] == "127.0.0.1"  # libcoap sends the address as SNI; GnuTLS lets IPv4 through
    assert peer.wait_event("closed", reason="close_notify")


def test_get_content_through_relay_default_suites(peers, tmp_path):
    """A GET whose content comes back through the relay, from libcoap's own
    plain server; with the relay's default priority (ECDHE-PSK wins)."""
    port = _free_udp_port()
    srv = subprocess.Popen([need("coap-server-notls"), "-A", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        peer = peers(port, psk={PSK_ID: PSK_KEY})
        for flavor in FLAVORS:
            out = coap_client(flavor, *psk_args(), f"{peer.uri}/")
            assert "This is a test server made with libcoap" in out, out
        hs = peer.find("handshake", ok=True)
        assert len(hs) == 2 and all(h["kx"] == "ECDHE-PSK" for h in hs), peer.dump()
    finally:
        srv.kill()
        srv.wait()


def test_psk_file(server, peers, tmp_path):
    """--psk-file: one identity and hex key a line, comments allowed."""
    f = tmp_path / "psk.txt"
    f.write_text(f"# identity:hexkey\n{PSK_ID}:{PSK_KEY.hex()}\n\n  ep-two:{b'second-key'.hex()}\n")
    peer = peers(server.port, extra=["--psk-file", str(f)])
    assert "c:2.01" in register("openssl", peer.uri, "file-1", *psk_args())
    assert "c:2.01" in register("gnutls", peer.uri, "file-2", *psk_args("ep-two", b"second-key"))
    ids = [h["psk_identity"] for h in peer.find("handshake", ok=True)]
    assert ids == [PSK_ID, "ep-two"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_wrong_psk_fails_with_reason(flavor, server, peers):
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, priority=PSK_CCM8)
    t0 = time.monotonic()
    out = register(flavor, peer.uri, "wrong-psk", *psk_args(key=b"not-the-key"))
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=5)
    # Promptly (not after GnuTLS's one-minute handshake timeout), with a reason
    # and an alert the client saw.
    assert time.monotonic() - t0 < 10
    assert hs["error"] == "GNUTLS_E_DECRYPTION_FAILED"
    assert "wrong PSK" in hs["reason"]
    assert hs["alert_sent"] == "bad_record_mac"
    assert hs["psk_identity"] == PSK_ID and hs["psk_identity_known"] is True
    assert re.search("bad record mac", out, re.I), out
    assert "wrong-psk" not in server.registrations


@pytest.mark.parametrize("flavor", FLAVORS)
def test_unknown_psk_identity_refused(flavor, server, peers):
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, priority=PSK_CCM8)
    out = register(flavor, peer.uri, "unknown-id", *psk_args(identity="who-is-this"))
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=5)
    assert hs["reason"] == "unknown PSK identity"
    assert hs["psk_identity"] == "who-is-this" and hs["psk_identity_known"] is False
    assert hs["alert_sent"] == "unknown_psk_identity"
    assert re.search("unknown psk identity|alert '115'", out, re.I), out


# ---- certificates --------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_certificate_mutual_auth(flavor, server, peers, pki):
    peer = peers(server.port, cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem", priority=ECDSA_CCM8)
    sec = ["-c", str(pki / "client.pem"), "-j", str(pki / "client.key"), "-C", str(pki / "ca.pem")]
    out = register(flavor, peer.uri, f"cert-{flavor}", *sec)
    assert "c:2.01" in out, out
    server.wait_registered(f"cert-{flavor}", timeout=5)
    hs = peer.wait_event("handshake", ok=True)
    assert hs["suite"] == "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"
    assert hs["cert_type"] == "X.509"
    assert hs["peer_dn"] == "CN=test-ep-cert"  # the client did authenticate


def test_client_rejects_relay_certificate_from_other_ca(server, peers, pki):
    """The relay's chain is what a client verifies: with another CA as trust
    anchor the OpenSSL client refuses it."""
    peer = peers(server.port, cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem")
    sec = ["-c", str(pki / "rogue.pem"), "-j", str(pki / "rogue.key"), "-C", str(pki / "rogue-ca.pem")]
    out = register("openssl", peer.uri, "wrong-trust", *sec)
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=10)
    assert hs["alert_received"] == "unknown_ca", hs


def test_untrusted_client_certificate_refused(server, peers, pki):
    peer = peers(server.port, cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem")
    # OpenSSL's client sends its certificate whoever issued it: the relay judges it.
    sec = ["-c", str(pki / "rogue.pem"), "-j", str(pki / "rogue.key"), "-C", str(pki / "ca.pem")]
    out = register("openssl", peer.uri, "rogue-openssl", *sec)
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=5)
    assert hs["error"] == "GNUTLS_E_CERTIFICATE_ERROR"
    assert "NOT trusted" in hs["verify"] and "issuer is unknown" in hs["verify"]
    assert hs["peer_dn"] == "CN=rogue-ep" and hs["alert_sent"] == "bad_certificate"
    assert re.search("bad certificate", out, re.I), out
    # GnuTLS's client sends none that the relay's CA list does not cover: refused too.
    mark = peer.mark()
    out = register("gnutls", peer.uri, "rogue-gnutls", *sec)
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=5, since=mark)
    assert hs["error"] == "GNUTLS_E_NO_CERTIFICATE_FOUND"
    assert not server.registrations


# ---- raw public keys (RFC 7250) --------------------------------------------------


def test_raw_public_key(server, peers, pki):
    """libcoap's GnuTLS build is the only client here with RPK (OpenSSL 3.0 has
    none): the allowed key gets through, named by its SPKI hash; another is refused."""
    peer = peers(server.port, rpk_pub=pki / "srv-rpk.pub", rpk_key=pki / "srv-rpk.key",
                 rpk_clients=[pki / "cli-rpk.pub"], priority=ECDSA_CCM8)
    out = register("gnutls", peer.uri, "rpk-ep", "-M", str(pki / "cli-rpk.both"))
    assert "c:2.01" in out, out
    server.wait_registered("rpk-ep", timeout=5)
    hs = peer.wait_event("handshake", ok=True)
    assert hs["cert_type"] == "Raw Public Key"
    assert hs["suite"] == "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"
    assert hs["peer_key_sha256"] == spki_sha256(pki / "cli-rpk.pub")
    out = register("gnutls", peer.uri, "rpk-other", "-M", str(pki / "other-rpk.both"))
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, timeout=5)
    assert hs["verify"] == "raw public key not among --rpk-client keys"
    assert hs["peer_key_sha256"] == spki_sha256(pki / "other-rpk.pub")
    assert "rpk-other" not in server.registrations


# ---- fault injection --------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_drop_first_handshake_datagrams(flavor, server, peers):
    """The first two ClientHellos are lost; the client's retransmissions (1 s,
    then 2 s) get through."""
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, drop_first=2)
    out = register(flavor, peer.uri, f"drop-{flavor}", *psk_args(), timeout=40)
    assert "c:2.01" in out, out
    server.wait_registered(f"drop-{flavor}", timeout=5)
    drops = peer.find("drop", reason="drop-first")
    assert len(drops) == 2 and all(d["dir"] == "in" for d in drops)
    hs = peer.wait_event("handshake", ok=True)
    assert hs["t"] - drops[0]["t"] >= 2.5  # two retransmission timeouts went by


@pytest.mark.parametrize("cookies", [True, False], ids=["cookies", "no-cookie"])
def test_drop_first_outgoing_handshake_datagrams(cookies, server, peers):
    """With cookies the relay's first two HelloVerifyRequests are lost; without,
    its first two ServerHello flights, which it must send again when the
    client's ClientHello comes again."""
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, drop_first_out=2, cookies=cookies)
    out = register("openssl", peer.uri, "drop-out", *psk_args(), timeout=40)
    assert "c:2.01" in out, out
    server.wait_registered("drop-out", timeout=5)
    assert len(peer.find("drop", reason="drop-first-out", dir="out")) == 2
    assert len(peer.find("hello_verify")) == (3 if cookies else 0)
    assert len(peer.find("handshake")) == 1, peer.dump()


# ---- long-lived associations with openssl s_client ----------------------------------


class SClient:
    """`openssl s_client` as a raw DTLS 1.2 PSK client: CoAP bytes written to it
    go out as records; what comes back is read from its stdout."""

    def __init__(self, peer, bind=None, sess_out=None, sess_in=None, extra=()):
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        args = [need("openssl"), "s_client", "-dtls1_2", "-connect", f"{host}:{peer.port}", "-quiet",
                "-psk", PSK_KEY.hex(), "-psk_identity", PSK_ID, "-cipher", "PSK-AES128-CCM8", *extra]
        if bind:
            args += ["-bind", bind]
        if sess_out:
            args += ["-sess_out", str(sess_out)]
        if sess_in:
            args += ["-sess_in", str(sess_in)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.mid = 0x2000

    def request(self, code, path, query=(), payload=b""):
        self.mid += 1
        m = Message(code=code, payload=payload)
        m.mtype, m.mid, m.token = Type.CON, self.mid, self.mid.to_bytes(2, "big")
        m.opt.uri_path = [s for s in path.split("/") if s]
        m.opt.uri_query = list(query)
        self.proc.stdin.write(m.encode())
        self.proc.stdin.flush()
        return m

    def response(self, timeout=5):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.proc.stdout.fileno(), 65536)
        return Message.decode(data) if data else None

    def register(self, ep, timeout=5):
        self.request(Code.POST, "rd", [f"ep={ep}", "lt=60"], b"</1/0>")
        return self.response(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def sclients():
    made = []

    def make(*a, **kw):
        c = SClient(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_blackout_forget_and_close(server, peers, sclients):
    peer = peers(server.port, psk={PSK_ID: PSK_KEY})
    c = sclients(peer)
    r = c.register("sc-1")
    assert r is not None and r.code == Code.CREATED, peer.dump()
    # A blackout: the request is lost; afterwards requests flow again.
    peer.blackout(1.5)
    c.request(Code.POST, "rd", ["ep=sc-2"], b"</1/0>")
    assert peer.wait_event("drop", reason="blackout", dir="in", timeout=3)
    assert c.response(timeout=0.5) is None
    peer.wait_event("blackout_end", timeout=5)
    assert c.register("sc-3").code == Code.CREATED
    assert "sc-2" not in server.registrations
    # `drop 1`: the next datagram from a client is lost, the one after is not.
    peer.drop(1)
    c.request(Code.POST, "rd", ["ep=sc-dropped"], b"</1/0>")
    assert peer.wait_event("drop", reason="drop", dir="in", timeout=3)
    assert c.register("sc-after-drop").code == Code.CREATED
    assert "sc-dropped" not in server.registrations
    # The relay forgets the association (a server restart): the client's records
    # are ignored as a real server would, reported as stray.
    peer.forget()
    mark = peer.mark()
    c.request(Code.POST, "rd", ["ep=sc-4"], b"</1/0>")
    stray = peer.wait_event("stray", since=mark, timeout=3)
    assert stray["content_type"] == 23  # application data of an unknown association
    assert c.response(timeout=0.5) is None
    # A fresh association: then the relay closes it with close_notify.
    c2 = sclients(peer)
    assert c2.register("sc-5").code == Code.CREATED
    peer.close_all()
    assert c2.proc.wait(5) is not None  # s_client ends on the close_notify


def test_idle_association_forgotten(server, peers, sclients):
    """--idle: a silent association is forgotten, as servers expire theirs; the
    client's next records are stray until it handshakes again."""
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, idle=1)
    c = sclients(peer)
    assert c.register("idle").code == Code.CREATED
    peer.command("sessions")
    assert peer.find("session", established=True)
    closed = peer.wait_event("closed", reason="idle", timeout=5)
    assert closed["established"] is True
    mark = peer.mark()
    c.request(Code.POST, "rd", ["ep=idle-again"], b"</1/0>")
    assert peer.wait_event("stray", since=mark, timeout=3)["content_type"] == 23
    assert c.response(timeout=0.5) is None


def test_new_association_from_same_address(server, peers, sclients):
    """A client that vanished without close_notify comes back from the same port
    (a reboot): the relay replaces the association after a cookie exchange and
    keeps the upstream socket, so the server sees the same address."""
    peer = peers(server.port, psk={PSK_ID: PSK_KEY})
    local = f"127.0.0.1:{_free_udp_port()}"
    c1 = sclients(peer, bind=local)
    assert c1.register("same-addr").code == Code.CREATED
    first = peer.wait_event("handshake", ok=True)
    c1.close()  # SIGKILL: no close_notify
    mark = peer.mark()
    c2 = sclients(peer, bind=local)
    assert c2.register("same-addr").code == Code.CREATED
    peer.wait_event("hello_verify", since=mark)
    peer.wait_event("closed", reason="new association from the same address", since=mark)
    second = peer.wait_event("handshake", ok=True, since=mark)
    assert second["client"] == first["client"] == local
    assert second["upstream_port"] == first["upstream_port"]
    assert server.registrations["same-addr"].remote.sockaddr[1] == first["upstream_port"]


@pytest.mark.parametrize("mechanism", ["ticket", "session-id"])
def test_resumption(mechanism, server, peers, sclients, tmp_path):
    """An OpenSSL client resumes (abbreviated handshake) with a session ticket or
    with the session ID from the relay's cache; after `restart` (keys and cache
    lost) it gets a full handshake."""
    if mechanism == "ticket":
        peer = peers(server.port, psk={PSK_ID: PSK_KEY}, cache=False)
        extra = ()
    else:
        peer = peers(server.port, psk={PSK_ID: PSK_KEY}, tickets=False)
        extra = ("-no_ticket",)
    sess = tmp_path / "session.pem"
    c = sclients(peer, sess_out=sess, extra=extra)
    assert c.register("resume").code == Code.CREATED
    assert peer.wait_event("handshake", ok=True)["resumed"] is False
    c.close()
    for expect_resumed in (True, False):
        if not expect_resumed:
            peer.restart()
        mark = peer.mark()
        c = sclients(peer, sess_in=sess, extra=extra)
        assert c.register("resume").code == Code.CREATED
        hs = peer.wait_event("handshake", ok=True, since=mark)
        assert hs["resumed"] is expect_resumed, peer.dump()
        assert hs["psk_identity"] == PSK_ID
        c.close()


def test_ipv6(server, peers, sclients):
    """The relay on [::1]. GnuTLS refuses an IP literal as SNI (RFC 6066 allows
    host names only), and libcoap's clients send "::1": refused, with the reason.
    A client that sends no SNI for an address gets through."""
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, listen="[::1]:0")
    assert peer.uri == f"coaps://[::1]:{peer.port}"
    c = sclients(peer, extra=("-noservername",))
    assert c.register("v6").code == Code.CREATED
    hs = peer.wait_event("handshake", ok=True)
    assert hs["client"].startswith("[::1]:") and "sni" not in hs
    mark = peer.mark()
    out = register("openssl", peer.uri, "v6-sni", *psk_args())
    assert "c:2.01" not in out
    hs = peer.wait_event("handshake", ok=False, since=mark)
    assert hs["error"] == "GNUTLS_E_RECEIVED_DISALLOWED_NAME" and hs["alert_sent"] == "illegal_parameter"


# ---- malformed input ----------------------------------------------------------------


def _capture_client_hello():
    """The first datagram of a real DTLS client (a ClientHello, no cookie)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        p = subprocess.Popen([need("openssl"), "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{s.getsockname()[1]}",
                              "-psk", PSK_KEY.hex(), "-psk_identity", PSK_ID],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return s.recvfrom(65536)[0]
        finally:
            p.kill()
            p.wait()


@pytest.mark.parametrize("cookies", [True, False], ids=["cookies", "no-cookie"])
def test_malformed_datagrams_do_not_crash(cookies, server, peers):
    """Thousands of mutated ClientHellos and junk datagrams against the ASan/UBSan
    build (without cookies they reach GnuTLS's handshake parsing); the relay
    survives without a finding and still serves a real client."""
    hello = _capture_client_hello()
    assert hello[0] == 22 and hello[13] == 1, hello[:16].hex()
    peer = peers(server.port, psk={PSK_ID: PSK_KEY}, cookies=cookies, asan=True)
    rng = random.Random(7250)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for i in range(3000):
            kind = i % 4
            if kind == 0:  # byte flips
                d = bytearray(hello)
                for _ in range(rng.randint(1, 8)):
                    d[rng.randrange(len(d))] = rng.randrange(256)
            elif kind == 1:  # truncation
                d = bytearray(hello[: rng.randrange(len(hello))])
            elif kind == 2:  # lengths set to extremes
                d = bytearray(hello)
                pos = rng.choice([11, 12, 14, 15, 16, 22, 23, 24, 59, 60, 61])
                d[pos] = rng.choice([0, 1, 0x7F, 0xFF])
            else:  # junk, or two records in one datagram
                d = bytearray(rng.randbytes(rng.randrange(1, 300))) if rng.random() < 0.5 else bytearray(hello + hello)
            socks[i % len(socks)].sendto(bytes(d), ("127.0.0.1", peer.port))
            if i % 200 == 0:
                time.sleep(0.02)  # let it keep up; this is about parsing, not load
        time.sleep(0.5)
        assert peer.proc.poll() is None, peer.dump()
        out = register("openssl", peer.uri, "after-junk", *psk_args())
        assert "c:2.01" in out, out + peer.dump()
    finally:
        for s in socks:
            s.close()
    findings = [line for line in peer.stderr if "Sanitizer" in line or "runtime error" in line]
    assert not findings, "".join(peer.stderr)
    assert not peer.find("unparsable"), peer.dump()
