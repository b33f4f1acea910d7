"""/9 Software Management (/9/0) against the aiocoap test server: a Package URI
pulled over HTTP to DELIVERED (3), Execute Install, the installer run, INSTALLED
(4) with Update Result 2; Activate and Deactivate change Activation State
(/9/0/12) through their commands; Uninstall runs the uninstaller with the
PkgName; an installer that fails (58, still DELIVERED); a URI this device cannot
fetch (56); a SHA-256 in the Package URI the package does not have (53);
INSTALLED stays INSTALLED across a restart."""

import pytest
from aiocoap import Code

from conftest import wait_for
from lwm2m_server import TEXT, TestServer
from test_firmware import repo  # noqa: F401  (the http.server fixture)

EP = "test-gw"


def software_config(tmp_path, extra=""):
    """Commands that record what they were given in `log`."""
    log = tmp_path / "commands.log"
    script = tmp_path / "sw.sh"
    script.write_text(
        "#!/bin/sh\nset -e\n"
        f'echo "$*" >> "{log}"\n'
        f'[ "$1" = install ] && [ -e "{tmp_path}/fail" ] && {{ echo "unpack failed" >&2; exit 3; }}\n'
        f'[ "$1" = install ] && cp "$2" "{tmp_path}/installed-package"\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return (
        "[software]\n"
        f'install = ["{script}", "install", "{{file}}"]\n'
        f'uninstall = ["{script}", "uninstall", "{{name}}"]\n'
        f'activate = ["{script}", "activate", "{{name}}"]\n'
        f'deactivate = ["{script}", "deactivate", "{{name}}"]\n'
        f'runner = "direct"\n{extra}\n'
    )


def commands(tmp_path):
    p = tmp_path / "commands.log"
    return p.read_text().splitlines() if p.exists() else []


def server(srv):
    return f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n'


def value(srv, res):
    r = srv.read(EP, f"/9/0/{res}", accept=TEXT)
    assert r.code == Code.CONTENT, (res, r.code, r.payload)
    return r.payload.decode()


def wait_value(srv, res, want, a, timeout=30):
    try:
        wait_for(lambda: value(srv, res) == want, timeout, f"/9/0/{res} = {want}")
    except AssertionError:
        raise AssertionError(f"/9/0/7 = {value(srv, 7)}, /9/0/9 = {value(srv, 9)}; "
                             + a.log.read_text()[-3000:]) from None


def delivered(srv, a, repo, name="app.tar"):  # noqa: F811
    assert srv.write(EP, "/9/0/3", repo.url(name).encode(), TEXT).code == Code.CHANGED
    wait_value(srv, 7, "3", a)
    assert value(srv, 9) == "3"


def test_pull_install_activate_uninstall_and_a_restart(agent, tmp_path, repo):  # noqa: F811
    package = b"software package " * 5000
    (repo.dir / "app.tar").write_bytes(package)
    srv = TestServer()
    try:
        a = agent(extra=software_config(tmp_path), servers=server(srv)).start()
        reg = srv.wait_registered(EP)
        assert "</9/0>" in reg.links, reg.links
        assert value(srv, 7) == "0"
        delivered(srv, a, repo)
        assert "Delivered" in a.status_json()["software"], a.status_json()["software"]
        # Activate is only for INSTALLED software.
        assert srv.execute(EP, "/9/0/10").code == Code.METHOD_NOT_ALLOWED
        assert srv.execute(EP, "/9/0/4").code == Code.CHANGED
        wait_value(srv, 7, "4", a)
        assert value(srv, 9) == "2"
        assert (tmp_path / "installed-package").read_bytes() == package
        assert commands(tmp_path)[0].startswith("install ")
        assert value(srv, 12) == "0", "inactive after the install"

        assert srv.execute(EP, "/9/0/10").code == Code.CHANGED
        wait_value(srv, 12, "1", a)
        assert srv.execute(EP, "/9/0/11").code == Code.CHANGED
        wait_value(srv, 12, "0", a)
        assert srv.execute(EP, "/9/0/10").code == Code.CHANGED
        wait_value(srv, 12, "1", a)
        # The PkgName comes from a signature's trusted comment; unsigned, it is empty.
        assert commands(tmp_path)[1:] == ["activate ", "deactivate ", "activate "], commands(tmp_path)

        # A restart: INSTALLED stays INSTALLED, still active.
        assert a.stop() == 0
        a.start()
        srv.wait_for(lambda: len(srv.registrations[EP].updates) >= 1 or srv.events.count(("register", EP)) >= 2,
                     30, "the Update after the restart")
        assert value(srv, 7) == "4"
        assert value(srv, 9) == "2"
        assert value(srv, 12) == "1"

        # Uninstall's argument: 2 is none of its values.
        assert srv.execute(EP, "/9/0/6", b"2").code == Code.BAD_REQUEST
        assert srv.execute(EP, "/9/0/6").code == Code.CHANGED
        wait_value(srv, 7, "0", a)
        assert commands(tmp_path)[-1] == "uninstall ", commands(tmp_path)
        assert value(srv, 9) == "0"
        a.stop()
    finally:
        srv.close()


def test_installer_failure_is_58_and_stays_delivered(agent, tmp_path, repo):  # noqa: F811
    (repo.dir / "app.tar").write_bytes(b"pkg" * 1000)
    (tmp_path / "fail").write_text("")
    srv = TestServer()
    try:
        a = agent(extra=software_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        delivered(srv, a, repo)
        assert srv.execute(EP, "/9/0/4").code == Code.CHANGED
        wait_value(srv, 9, "58", a)
        assert value(srv, 7) == "3", "the server may execute Install again"
        assert "unpack failed" in a.log.read_text()
        assert "installer failed" in a.status_json()["software"], a.status_json()["software"]
        # Without the fault the same package installs. First as
        # lwgate-software@install.service would, through the CLI.
        (tmp_path / "fail").unlink()
        r = a.cli("software-command", "--config", str(a.config), "install", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "installed-package").read_bytes() == b"pkg" * 1000
        assert srv.execute(EP, "/9/0/4").code == Code.CHANGED
        wait_value(srv, 7, "4", a)
        a.stop()
    finally:
        srv.close()


@pytest.mark.parametrize("uri", ["ftp://127.0.0.1/app.tar", "http://[bad uri"])
def test_a_bad_uri_is_56(agent, tmp_path, uri):
    srv = TestServer()
    try:
        a = agent(extra=software_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        assert srv.write(EP, "/9/0/3", uri.encode(), TEXT).code == Code.CHANGED
        wait_value(srv, 9, "56", a)
        assert value(srv, 7) == "0"
        assert commands(tmp_path) == []
        a.stop()
    finally:
        srv.close()


def test_uninstall_gives_the_uninstaller_the_pkg_name(agent, tmp_path, repo):  # noqa: F811
    """PkgName from a minisign trusted comment (`name=… version=…`)."""
    import os
    import shutil
    import subprocess
    if shutil.which("minisign") is None:
        if os.environ.get("CI"):
            pytest.fail("minisign is not installed (scripts/setup installs it)")
        pytest.skip("minisign is not installed")
    key = tmp_path / "key"
    subprocess.run(["minisign", "-G", "-W", "-p", f"{key}.pub", "-s", f"{key}.sec"],
                   check=True, capture_output=True)
    pkg = repo.dir / "app.tar"
    pkg.write_bytes(b"signed package" * 100)
    subprocess.run(["minisign", "-S", "-s", f"{key}.sec", "-m", str(pkg),
                    "-t", "name=demo-app version=3.1"], check=True, capture_output=True)
    srv = TestServer()
    try:
        extra = software_config(tmp_path, f'public_key = "{key}.pub"')
        a = agent(extra=extra, servers=server(srv)).start()
        srv.wait_registered(EP)
        delivered(srv, a, repo)
        assert value(srv, 0) == "demo-app"
        assert value(srv, 1) == "3.1"
        assert srv.execute(EP, "/9/0/4").code == Code.CHANGED
        wait_value(srv, 7, "4", a)
        assert srv.execute(EP, "/9/0/6", b"0").code == Code.CHANGED
        wait_value(srv, 7, "0", a)
        assert commands(tmp_path)[-1] == "uninstall demo-app", commands(tmp_path)
        assert value(srv, 0) == ""
        a.stop()
    finally:
        srv.close()


def test_a_sha256_mismatch_is_53_and_nothing_is_installed(agent, tmp_path, repo):  # noqa: F811
    import hashlib
    package = b"app " * 3000
    (repo.dir / "app.tar").write_bytes(package)
    srv = TestServer()
    try:
        a = agent(extra=software_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        wrong = hashlib.sha256(b"other").hexdigest()
        assert srv.write(EP, "/9/0/3", repo.url(f"app.tar#sha256={wrong}").encode(), TEXT).code == Code.CHANGED
        wait_value(srv, 9, "53", a)
        assert value(srv, 7) == "0"
        assert "SHA-256 mismatch" in a.status_json()["software"], a.status_json()["software"]
        assert srv.execute(EP, "/9/0/4").code == Code.METHOD_NOT_ALLOWED
        assert commands(tmp_path) == []
        right = hashlib.sha256(package).hexdigest()
        assert srv.write(EP, "/9/0/3", repo.url(f"app.tar#sha256={right}").encode(), TEXT).code == Code.CHANGED
        wait_value(srv, 7, "3", a)
        a.stop()
    finally:
        srv.close()


def test_an_instance_per_package_created_and_deleted_by_the_server(agent, tmp_path, repo):  # noqa: F811
    """Create on /9 gives a second instance with its own machine, package and
    state; both install, both survive a restart; Delete of an installed one is
    refused, of an uninstalled one drops it (and its directory) for good."""
    import json
    (repo.dir / "app.tar").write_bytes(b"first package " * 1000)
    (repo.dir / "tool.tar").write_bytes(b"second package " * 1000)
    srv = TestServer()
    try:
        a = agent(extra=software_config(tmp_path), servers=server(srv)).start()
        srv.wait_registered(EP)
        created = srv.create(EP, "/9", json.dumps(
            [{"bn": "/9/1/", "n": "3", "vs": repo.url("tool.tar")}]).encode(), 110)
        assert created.code == Code.CREATED, (created.code, created.payload)
        assert list(created.opt.location_path) == ["9", "1"]
        srv.wait_for(lambda: any("</9/1>" in links for _, links in srv.registrations[EP].updates), 10,
                     "an Update listing /9/1")

        def v(inst, res):
            r = srv.read(EP, f"/9/{inst}/{res}", accept=TEXT)
            return r.payload.decode() if r.code == Code.CONTENT else r.code

        wait_for(lambda: v(1, 7) == "3", 20, "/9/1 DELIVERED")
        assert v(0, 7) == "0", "/9/0 untouched"
        delivered(srv, a, repo)
        for inst in (0, 1):
            assert srv.execute(EP, f"/9/{inst}/4").code == Code.CHANGED
        wait_for(lambda: v(0, 7) == "4" and v(1, 7) == "4", 20, "both INSTALLED")
        installs = [c for c in commands(tmp_path) if c.startswith("install ")]
        base = tmp_path / "state" / "software"
        assert sorted(installs) == sorted([f"install {base / 'package'}", f"install {base / '1' / 'package'}"]), installs
        status = a.status_json()["software"]
        assert "/9/0: Installed" in status and "/9/1: Installed" in status, status

        assert a.stop() == 0
        a.start()
        srv.wait_for(lambda: len(srv.registrations[EP].updates) >= 2 or srv.events.count(("register", EP)) >= 2,
                     30, "the Update after the restart")
        assert v(0, 7) == "4" and v(1, 7) == "4"

        assert srv.delete(EP, "/9/1").code == Code.METHOD_NOT_ALLOWED
        assert srv.execute(EP, "/9/1/6").code == Code.CHANGED
        wait_for(lambda: v(1, 7) == "0", 20, "/9/1 uninstalled")
        assert srv.delete(EP, "/9/1").code == Code.DELETED
        assert v(1, 7) == Code.NOT_FOUND
        wait_for(lambda: not (base / "1").exists(), 5, "/9/1's directory removed")
        assert a.stop() == 0
        a.start()
        srv.wait_for(lambda: len(srv.registrations[EP].updates) >= 4 or srv.events.count(("register", EP)) >= 3,
                     30, "the Update after the second restart")
        assert v(1, 7) == Code.NOT_FOUND
        assert v(0, 7) == "4"
        a.stop()
    finally:
        srv.close()
