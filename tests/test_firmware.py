"""/5 Firmware Update as ThingsBoard and Cumulocity drive it, against the aiocoap
test server: a Package URI (pull over HTTP from a real server on loopback) or the
image pushed block-wise to /5/0/0, State observed, Execute /5/0/2 when
Downloaded, the installer run, and after the restart it causes State 0 with
Update Result 1 and the new /3/0/3. Faults: unsupported scheme (9), malformed
URI (7), a package too large (2), an installer that fails (8), cancel by an
empty URI; a bad signature when a key is configured, a SHA-256 from the server
(in the Package URI or a manifest beside the package) that the image does not
have (5, installer not run)."""

import hashlib
import http.server
import shutil
import subprocess
import threading
import time
from functools import partial

import pytest
from aiocoap import Code

from conftest import wait_for
from lwm2m_server import OPAQUE, TEXT, TestServer

EP = "test-gw"


class HttpRepo:
    """Python's http.server over a directory, on a free loopback port; `paths`
    are the request targets it was sent."""

    def __init__(self, root):
        self.paths = []
        paths = self.paths

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                paths.append(self.path)

        handler = partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def repo(tmp_path):
    d = tmp_path / "repo"
    d.mkdir()
    r = HttpRepo(d)
    r.dir = d
    yield r
    r.close()


def firmware_config(tmp_path, extra=""):
    """An installer that records the package and 'installs' version 2.0 by
    writing the version file lwgate reads /3/0/3 from."""
    (tmp_path / "version").write_text("gw-image 1.0\n")
    hook = tmp_path / "install.sh"
    hook.write_text(
        "#!/bin/sh\nset -e\n"
        f'cp "$1" "{tmp_path}/installed"\n'
        f'[ -e "{tmp_path}/fail" ] && {{ echo "flash failed" >&2; exit 3; }}\n'
        f'echo "gw-image 2.0" > "{tmp_path}/version"\n'
        "echo installed\n"
    )
    hook.chmod(0o755)
    return (
        f'[device]\nfirmware_version_file = "{tmp_path / "version"}"\n'
        f'[firmware]\ninstall = ["{hook}", "{{file}}"]\nrunner = "direct"\n{extra}\n'
    )


def server(srv):
    return f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n'


def state(srv, what="/5/0/3"):
    r = srv.read(EP, what, accept=TEXT)
    assert r.code == Code.CONTENT, (what, r.code, r.payload)
    return r.payload.decode()


def wait_state(srv, want, timeout=30, a=None):
    def ok():
        return state(srv) == want

    try:
        wait_for(ok, timeout, f"/5/0/3 = {want}")
    except AssertionError:
        raise AssertionError(f"/5/0/3 = {state(srv)}, /5/0/5 = {state(srv, '/5/0/5')}; "
                             + (a.log.read_text()[-3000:] if a else "")) from None


def test_pull_over_http_execute_install_and_judged_after_restart(agent, tmp_path, repo):
    image = bytes(range(256)) * 4096  # 1 MiB
    (repo.dir / "fw.bin").write_bytes(image)
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv))
        out = a.cli("check-config", "--config", str(a.config)).stdout
        assert f"firmware: /5 installs with {tmp_path / 'install.sh'} {{file}}" in out, out
        a.start()
        reg = srv.wait_registered(EP)
        assert "</5/0>" in reg.links, reg.links
        assert state(srv, "/3/0/3") == "gw-image 1.0"
        assert state(srv, "/5/0/9") == "2"
        # What ThingsBoard observes to follow the update.
        srv.write_attributes(EP, "/5/0/3", "pmin=0")
        _, notes, cancel = srv.observe(EP, "/5/0/3", accept=TEXT)
        assert srv.write(EP, "/5/0/1", repo.url("fw.bin").encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        assert state(srv, "/5/0/5") == "0"
        seen = [n.payload.decode() for n in notes if hasattr(n, "payload")]
        assert "1" in seen and seen[-1] == "2", seen
        st = a.status_json()["firmware"]
        assert st.startswith("Downloaded"), st
        # Execute: answered at once, the installer runs after.
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: (tmp_path / "version").read_text().startswith("gw-image 2.0"), 20, "the installer")
        assert (tmp_path / "installed").read_bytes() == image
        assert state(srv) == "3", "Updating until the restart"
        cancel()
        # The installer's restart (of lwgate, here; of the gateway in the field).
        assert a.stop() == 0
        a.start()
        srv.wait_for(lambda: len(srv.registrations[EP].updates) >= 1 or srv.events.count(("register", EP)) >= 2,
                     30, "the Update after the restart")
        assert state(srv) == "0"
        assert state(srv, "/5/0/5") == "1"
        assert state(srv, "/3/0/3") == "gw-image 2.0"
        a.stop()
    finally:
        srv.close()


def test_push_block_wise_to_5_0_0(agent, tmp_path):
    image = bytes((i * 7) & 0xFF for i in range(300_000))
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        # aiocoap sends a body this size with Block1, block by block.
        r = srv.write(EP, "/5/0/0", image, OPAQUE)
        assert r.code == Code.CHANGED, (r.code, r.payload)
        wait_state(srv, "2", a=a)
        # What lwgate-install.service runs as root: the same installer on the package.
        r = a.cli("install-package", "--config", str(a.config), check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "installed").read_bytes() == image
        (tmp_path / "installed").unlink()
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: (tmp_path / "installed").exists() and (tmp_path / "installed").read_bytes() == image,
                 20, "the pushed image installed")
        a.stop()
    finally:
        srv.close()


def test_uri_faults_and_cancel(agent, tmp_path, repo):
    (repo.dir / "big.bin").write_bytes(b"x" * 200_000)
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path, "max_size = 100000"), servers=server(srv)).start()
        srv.wait_registered(EP)
        # Write succeeds; the error is in Update Result (E.6.1).
        for uri, result in [("ftp://127.0.0.1/fw.bin", "9"), ("http://[bad uri", "7"),
                            (repo.url("missing.bin"), "7"), (repo.url("big.bin"), "2")]:
            assert srv.write(EP, "/5/0/1", uri.encode(), TEXT).code == Code.CHANGED
            wait_for(lambda: state(srv, "/5/0/5") == result, 20, f"result {result} for {uri}")
            assert state(srv) == "0", uri
        assert "result 2" in a.status_json()["firmware"], a.status_json()["firmware"]
        # An empty URI resets: Idle, result 0.
        assert srv.write(EP, "/5/0/1", b"", TEXT).code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "0", 10, "reset")
        # Execute outside Downloaded: 4.05.
        assert srv.execute(EP, "/5/0/2").code == Code.METHOD_NOT_ALLOWED
        a.stop()
    finally:
        srv.close()


def test_installer_failure_is_result_8_and_keeps_the_package(agent, tmp_path, repo):
    (repo.dir / "fw.bin").write_bytes(b"image" * 1000)
    (tmp_path / "fail").write_text("")
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", repo.url("fw.bin").encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "8", 20, "result 8")
        assert state(srv) == "2", "back to Downloaded: the server may execute again"
        assert "flash failed" in a.log.read_text()
        assert "installer failed" in a.status_json()["firmware"], a.status_json()["firmware"]
        a.stop()
    finally:
        srv.close()


def test_a_bad_signature_is_result_5_and_nothing_is_installed(agent, tmp_path, repo):
    if shutil.which("minisign") is None:
        import os
        if os.environ.get("CI"):
            pytest.fail("minisign missing: scripts/setup installs it")
        pytest.skip("minisign not installed")
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["minisign", "-G", "-W", "-p", str(keys / "fw.pub"), "-s", str(keys / "fw.key")],
                   check=True, capture_output=True)
    good = repo.dir / "fw.bin"
    good.write_bytes(b"signed image" * 1000)
    subprocess.run(["minisign", "-S", "-s", str(keys / "fw.key"), "-m", str(good), "-t", "name=gw-image version=2.0"],
                   check=True, capture_output=True)
    bad = repo.dir / "bad.bin"
    bad.write_bytes(b"tampered image" * 1000)
    shutil.copy(str(good) + ".minisig", str(bad) + ".minisig")
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path, f'public_key = "{keys / "fw.pub"}"'), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", repo.url("bad.bin").encode(), TEXT).code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "5", 20, "result 5")
        assert state(srv) == "0"
        assert srv.execute(EP, "/5/0/2").code == Code.METHOD_NOT_ALLOWED
        assert not (tmp_path / "installed").exists()
        # The good one: Downloaded, with the name and version of its trusted comment.
        assert srv.write(EP, "/5/0/1", repo.url("fw.bin").encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        assert state(srv, "/5/0/6") == "gw-image" and state(srv, "/5/0/7") == "2.0"
        a.stop()
    finally:
        srv.close()


def test_a_sha256_from_the_server_that_does_not_match_is_result_5(agent, tmp_path, repo):
    """The digest in the Package URI's fragment (never sent to the server), and
    a `sha256sum` manifest beside the package when the config asks for one."""
    image = b"firmware image " * 20_000
    (repo.dir / "fw.bin").write_bytes(image)
    good = hashlib.sha256(image).hexdigest()
    bad = hashlib.sha256(b"another image").hexdigest()
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path, "sha256_manifest = true"), servers=server(srv)).start()
        srv.wait_registered(EP)

        def pull(uri, result):
            assert srv.write(EP, "/5/0/1", uri.encode(), TEXT).code == Code.CHANGED
            wait_for(lambda: state(srv, "/5/0/5") == result or state(srv) == "2", 20, f"result {result} for {uri}")
            assert state(srv, "/5/0/5") == result, (uri, a.status_json()["firmware"])

        # No manifest beside the package: refused, nothing fetched but the manifest.
        pull(repo.url("fw.bin"), "5")
        st = a.status_json()["firmware"]
        assert "no SHA-256 manifest" in st and "sha256_manifest" in st, st
        assert repo.paths[-1] == "/fw.bin.sha256", repo.paths

        # A manifest that names another digest: the package is fetched, then refused.
        (repo.dir / "fw.bin.sha256").write_text(f"{bad}  fw.bin\n")
        pull(repo.url("fw.bin"), "5")
        st = a.status_json()["firmware"]
        assert f"SHA-256 mismatch: expected {bad}, the image has {good}" in st, st
        assert state(srv) == "0"
        assert srv.execute(EP, "/5/0/2").code == Code.METHOD_NOT_ALLOWED
        assert not (tmp_path / "installed").exists()
        assert f"firmware package refused: SHA-256 mismatch: expected {bad}" in a.log.read_text()

        # The right manifest, and a fragment that disagrees with it: refused
        # before the package is fetched.
        (repo.dir / "fw.bin.sha256").write_text(f"{good} *fw.bin\n")
        fetched = repo.paths.count("/fw.bin")
        pull(repo.url(f"fw.bin#sha256={bad}"), "5")
        assert "the SHA-256 manifest gives" in a.status_json()["firmware"]
        assert repo.paths.count("/fw.bin") == fetched

        # Both agree: Downloaded, and the fragment never reached the server.
        pull(repo.url(f"fw.bin#sha256={good.upper()}"), "0")
        wait_state(srv, "2", a=a)
        assert all("#" not in p and "sha256=" not in p for p in repo.paths), repo.paths
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: (tmp_path / "installed").exists(), 20, "the installer")
        assert (tmp_path / "installed").read_bytes() == image
        a.stop()
    finally:
        srv.close()


def test_a_sha256_in_the_uri_alone_and_a_malformed_one(agent, tmp_path, repo):
    """Without a manifest configured: the fragment's digest is checked, and one
    that is not 64 hex digits is a malformed URI (7) at once."""
    image = b"pulled image " * 5000
    (repo.dir / "fw.bin").write_bytes(image)
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", repo.url("fw.bin#sha256=1234").encode(), TEXT).code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "7", 10, "result 7")
        assert repo.paths == []
        wrong = hashlib.sha256(b"x").hexdigest()
        assert srv.write(EP, "/5/0/1", repo.url(f"fw.bin?sha256={wrong}").encode(), TEXT).code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "5", 20, "result 5")
        assert "SHA-256 mismatch" in a.status_json()["firmware"]
        right = hashlib.sha256(image).hexdigest()
        assert srv.write(EP, "/5/0/1", repo.url(f"fw.bin#sha256={right}").encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        a.stop()
    finally:
        srv.close()


class Nginx:
    """An nginx of this test alone (ranges, ETags), its `/slow/` at 100 KB/s."""

    def __init__(self, d):
        import os
        import socket

        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            if os.environ.get("CI"):
                pytest.fail("nginx missing: scripts/setup installs it")
            pytest.skip("nginx not installed")
        self.dir = d
        (d / "www").mkdir()
        (d / "tmp").mkdir()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        (d / "nginx.conf").write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format lw '$status range="$http_range" sent=$body_bytes_sent';
    access_log {d}/access.log lw;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {d}/www;
        location /slow/ {{ alias {d}/www/; limit_rate 100k; }}
    }}
}}
""")
        self.proc = subprocess.Popen([nginx, "-c", str(d / "nginx.conf"), "-p", str(d)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (d / "nginx.pid").exists(), 10, "nginx started")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def log(self):
        p = self.dir / "access.log"
        return p.read_text() if p.exists() else ""

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_kill_9_mid_download_resumes_with_a_range(agent, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    n = Nginx(web)
    image = bytes((i * 31) & 0xFF for i in range(1_500_000))
    (web / "www" / "fw.bin").write_bytes(image)
    srv = TestServer()
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", n.url("slow/fw.bin").encode(), TEXT).code == Code.CHANGED
        # Past the first progress record (5 s), then the power cut.
        wait_for(lambda: "bytes of 1500000" in (a.status_json().get("firmware") or "")
                 and int(a.status_json()["firmware"].split(", ")[2].split()[0]) >= 500_000, 30,
                 "half the download")
        a.kill()
        updates = len(srv.registrations[EP].updates)
        a.start()
        # Reads go to the address of the restarted agent once its Update came.
        srv.wait_for(lambda: len(srv.registrations[EP].updates) > updates or srv.events.count(("register", EP)) >= 2,
                     30, "the Update after the restart")
        wait_state(srv, "2", timeout=40, a=a)
        assert state(srv, "/5/0/5") == "0"
        log = n.log()
        assert '206 range="bytes=' in log, log
        sent = sum(int(line.rsplit("sent=", 1)[1]) for line in log.splitlines())
        assert sent < len(image) * 1.5, f"resumed, not fetched again: {sent} bytes sent\n{log}"
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: (tmp_path / "installed").exists() and (tmp_path / "installed").read_bytes() == image,
                 20, "the resumed image installed intact")
        a.stop()
    finally:
        srv.close()
        n.close()


def test_pull_over_coap_from_the_lwm2m_server_itself(agent, tmp_path):
    """ThingsBoard's "auto-generated CoAP URL": the package on the LwM2M server,
    fetched block-wise (aiocoap answers Block2)."""
    image = bytes((i * 13) & 0xFF for i in range(200_000))
    srv = TestServer()
    srv.files["fw/image"] = image
    try:
        a = agent(extra=firmware_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", f"{srv.uri}/fw/image".encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        assert srv.file_gets >= 1
        assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
        wait_for(lambda: (tmp_path / "installed").exists() and (tmp_path / "installed").read_bytes() == image,
                 20, "the image installed")
        a.stop()
    finally:
        srv.close()


def test_a_manifest_beside_a_coap_package(agent, tmp_path):
    """`sha256_manifest` over CoAP: `<URI>.sha256` fetched block-wise too; the
    wrong digest is 5, the right one Downloaded."""
    image = bytes((i * 29) & 0xFF for i in range(150_000))
    srv = TestServer()
    srv.files["fw/image"] = image
    srv.files["fw/image.sha256"] = (hashlib.sha256(b"not it").hexdigest() + "  image\n").encode()
    try:
        a = agent(extra=firmware_config(tmp_path, "sha256_manifest = true"), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/5/0/1", f"{srv.uri}/fw/image".encode(), TEXT).code == Code.CHANGED
        wait_for(lambda: state(srv, "/5/0/5") == "5", 20, "result 5")
        assert "SHA-256 mismatch" in a.status_json()["firmware"]
        srv.files["fw/image.sha256"] = (hashlib.sha256(image).hexdigest() + "  image\n").encode()
        assert srv.write(EP, "/5/0/1", f"{srv.uri}/fw/image".encode(), TEXT).code == Code.CHANGED
        wait_state(srv, "2", a=a)
        a.stop()
    finally:
        srv.close()


def test_pull_over_coaps_with_the_servers_dtls_credentials(agent, tmp_path):
    """A coaps:// Package URI on the LwM2M server's own host and port: fetched over
    a second DTLS session with that server account's PSK."""
    from dtls_peer import DtlsPeer

    key = bytes(range(16))
    image = bytes((i * 17) & 0xFF for i in range(100_000))
    srv = TestServer()
    srv.files["fw/image"] = image
    try:
        with DtlsPeer(srv.port, psk={EP: key}) as relay:
            servers = (f'[[server]]\nuri = "{relay.uri}"\nssid = 101\nlifetime = 300\nsecurity = "psk"\n'
                       f'psk_identity = "{EP}"\npsk_key = "{key.hex()}"\n')
            a = agent(extra=firmware_config(tmp_path), servers=servers).start()
            srv.wait_registered(EP, 20)
            mark = relay.mark()
            assert srv.write(EP, "/5/0/1", f"{relay.uri}/fw/image".encode(), TEXT).code == Code.CHANGED
            wait_state(srv, "2", timeout=60, a=a)
            hs = relay.wait_event("handshake", ok=True, since=mark, timeout=5)
            assert hs["psk_identity"] == EP, hs
            assert srv.execute(EP, "/5/0/2").code == Code.CHANGED
            wait_for(lambda: (tmp_path / "installed").exists() and (tmp_path / "installed").read_bytes() == image,
                     20, "the image installed")
            a.stop()
    finally:
        srv.close()
