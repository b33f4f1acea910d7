"""The deb and the rpm, built by scripts/package and inspected as a distribution would."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.packaging

VERSION = "0.1.0"


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def packages():
    for tool in ("cargo-deb", "rpmbuild", "dpkg-deb", "rpm", "rpm2cpio", "cpio", "lintian", "rpmlint"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/setup installs it")
    dist = ROOT / "dist"
    for old in dist.glob("lwgate*"):
        old.unlink()
    shutil.rmtree(dist / "ctrl", ignore_errors=True)  # left by older versions of this test
    sh(str(ROOT / "scripts" / "package"), cwd=ROOT, timeout=1800)
    debs = list(dist.glob(f"lwgate_{VERSION}-*_*.deb"))
    rpms = list(dist.glob(f"lwgate-{VERSION}-*.rpm"))
    # Only the two packages: scripts/package removes its rpmbuild tree.
    assert len(debs) == 1 and len(rpms) == 1 and len(list(dist.iterdir())) == 2, list(dist.iterdir())
    return debs[0], rpms[0]


def enabling_lines(script):
    """Commands (not comments or messages) that would enable or start the service."""
    cmds = [ln.strip() for ln in script.splitlines()]
    cmds = [c for c in cmds if c and not c.startswith(("#", "echo"))]
    return [c for c in cmds if " enable" in c or " start " in c or c.endswith(" start")]


EXPECTED = [
    "/usr/bin/lwgate",
    "/etc/lwgate/lwgate.toml",
    "/etc/lwgate/devices.d/README",
    # Commented examples an installer copies to <name>.toml (ignored as they are).
    "/etc/lwgate/devices.d/modbus-tcp.toml.example",
    "/etc/lwgate/devices.d/modbus-rtu.toml.example",
    "/etc/lwgate/devices.d/mqtt.toml.example",
    "/etc/lwgate/devices.d/mqtt-discovery.toml.example",
    "/etc/lwgate/devices.d/serial.toml.example",
    "/etc/lwgate/devices.d/nmea-gps.toml.example",
    "/usr/lib/sysusers.d/lwgate.conf",
    "/usr/lib/tmpfiles.d/lwgate.conf",
    "/usr/share/doc/lwgate/README.md",
    "/usr/share/man/man8/lwgate.8.gz",
    # lwm2m.object_dirs' default: the package owns it, with a README saying what goes there.
    "/usr/share/lwgate/objects/README",
    # The IPSO objects bridged devices map to (objects/ in the source).
    "/usr/share/lwgate/objects/3303.xml",
    "/usr/share/lwgate/objects/3311.xml",
]


def test_deb_contents(packages, tmp_path):
    deb, _ = packages
    listing = sh("dpkg-deb", "-c", str(deb)).stdout
    for path in EXPECTED + [
        "/lib/systemd/system/lwgate.service",
        "/lib/systemd/system/lwgate-install.service",
        "/lib/systemd/system/lwgate-software@.service",
        "/usr/share/doc/lwgate/copyright",
    ]:
        assert f".{path}\n" in listing, f"{path} missing from {deb.name}:\n{listing}"
    assert sh("dpkg-deb", "-f", str(deb), "Package").stdout.strip() == "lwgate"
    ctrl = tmp_path / "ctrl"
    sh("dpkg-deb", "-e", str(deb), str(ctrl))
    assert "/etc/lwgate/lwgate.toml" in (ctrl / "conffiles").read_text().split()
    postinst = (ctrl / "postinst").read_text()
    assert "systemd-sysusers" in postinst
    assert not enabling_lines(postinst), "must not enable or start on install"


def rpm_query(rpm, fmt):
    return sh("rpm", "-qp", "--qf", fmt, str(rpm)).stdout


def test_rpm_contents(packages):
    _, rpm = packages
    files = sh("rpm", "-qlp", str(rpm)).stdout.split()
    for path in EXPECTED + ["/usr/lib/systemd/system/lwgate.service", "/usr/lib/systemd/system/lwgate-install.service",
                            "/usr/lib/systemd/system/lwgate-software@.service",
                            "/usr/share/licenses/lwgate/LICENSE"]:
        assert path in files, f"{path} missing from {rpm.name}: {files}"
    assert not [f for f in files if f.startswith("/usr/lib/.build-id")], files
    flags = rpm_query(rpm, "[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILENAMES}\n]")
    by_path = {line.split()[-1]: line.split()[:-1] for line in flags.splitlines()}
    for conf in ("/etc/lwgate/lwgate.toml", "/etc/lwgate/devices.d/README", "/etc/lwgate/devices.d/modbus-tcp.toml.example"):
        assert set("cn") <= set(by_path[conf][0]), flags  # %config(noreplace)
    # The rpm owns its directories (so erase removes them when empty), including
    # the ones that hold no file of its own.
    for d in ("/etc/lwgate", "/etc/lwgate/devices.d", "/etc/lwgate/objects", "/usr/share/lwgate/objects"):
        assert by_path[d][-1].startswith("d"), flags
    scripts = sh("rpm", "-qp", "--scripts", str(rpm)).stdout
    assert "systemd-sysusers" in scripts and not enabling_lines(scripts)


def test_rpm_header_matches_deb(packages):
    """One maintainer identity, one homepage and one description for both packages,
    and the tags rpm tools expect."""
    deb, rpm = packages
    fields = {f: sh("dpkg-deb", "-f", str(deb), f).stdout for f in ("Maintainer", "Homepage", "Description")}
    assert rpm_query(rpm, "%{PACKAGER}") == fields["Maintainer"].strip()
    assert rpm_query(rpm, "%{URL}") == fields["Homepage"].strip()
    summary, _, extended = fields["Description"].partition("\n")
    assert rpm_query(rpm, "%{SUMMARY}") == summary.strip()
    words = lambda text: " ".join(text.split())  # noqa: E731 - the two wrap differently
    assert words(rpm_query(rpm, "%{DESCRIPTION}")) == words(extended)
    # Claims stay with what this version does: Modbus end devices behind /25, and
    # what is not in it yet said so.
    assert "Modbus" in words(extended) and "Firmware Update (/5)" in words(extended)
    assert "Software Management (/9)" in words(extended)
    assert "MQTT and serial-line bridges and SMS are not in this version" in words(extended)
    assert rpm_query(rpm, "%{GROUP}") not in ("", "Unspecified")
    assert rpm_query(rpm, "%{BUILDHOST}") not in ("", "(none)")
    assert fields["Maintainer"].strip() in rpm_query(rpm, "%{CHANGELOGNAME}")
    assert "@example.invalid>" in fields["Maintainer"]  # the same in Cargo.toml's authors and both changelogs
    changelog = (ROOT / "packaging" / "debian" / "changelog").read_text()
    assert f"-- {fields['Maintainer'].strip()}  " in changelog


def binaries(packages, tmp_path):
    deb, rpm = packages
    (tmp_path / "deb").mkdir()
    (tmp_path / "rpm").mkdir()
    sh("dpkg-deb", "-x", str(deb), str(tmp_path / "deb"))
    sh("sh", "-c", f'rpm2cpio "{rpm}" | cpio -idm --quiet', cwd=tmp_path / "rpm")
    return tmp_path / "deb" / "usr/bin/lwgate", tmp_path / "rpm" / "usr/bin/lwgate"


def test_binaries_are_stripped(packages, tmp_path):
    for binary in binaries(packages, tmp_path):
        out = sh("file", "-b", str(binary)).stdout
        assert "ELF" in out and ", stripped" in out, f"{binary}: {out}"
        assert sh(str(binary), "version").returncode == 0


def test_lintian_reports_no_errors(packages):
    deb, _ = packages
    r = sh("lintian", "--fail-on", "error", str(deb), check=False)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    assert not errors and r.returncode == 0, r.stdout + r.stderr


def test_rpmlint_is_clean(packages):
    """rpmlint with the project's settings and justified filters (packaging/rpm/):
    no error and no warning left; a filter that matches nothing is itself an error."""
    _, rpm = packages
    rpmdir = ROOT / "packaging" / "rpm"
    r = sh("rpmlint", "-c", str(rpmdir / "rpmlint.toml"), "-r", str(rpmdir / "lwgate.rpmlintrc"), str(rpm),
           check=False)
    found = [line for line in r.stdout.splitlines() if re.match(r"\S+: [EW]: ", line)]
    assert not found and r.returncode == 0, r.stdout + r.stderr
    assert " 0 errors, 0 warnings" in r.stdout, r.stdout


def test_rpm_erase_removes_empty_config_dirs(packages, tmp_path):
    """The rpm's %postun, as shipped, run against a scratch /etc: on erase ($1 = 0)
    it removes /etc/lwgate and the directories tmpfiles made when empty, keeps
    what an operator put there, and touches nothing on upgrade ($1 = 1)."""
    _, rpm = packages
    script = rpm_query(rpm, "%{POSTUN}")
    assert "/etc/lwgate" in script
    etc = tmp_path / "etc"
    script = script.replace("/etc/lwgate", f"{etc}/lwgate").replace("/run/systemd/system", f"{tmp_path}/none")

    def run(arg, *keep):
        for d in ("objects", "devices.d"):
            (etc / "lwgate" / d).mkdir(parents=True, exist_ok=True)
        for f in keep:
            (etc / "lwgate" / f).write_text("x")
        sh("sh", "-c", script, "postun", arg)

    run("1")
    assert (etc / "lwgate" / "objects").is_dir()
    run("0", "objects/local.xml")
    assert (etc / "lwgate" / "objects" / "local.xml").exists() and not (etc / "lwgate" / "devices.d").exists()
    (etc / "lwgate" / "objects" / "local.xml").unlink()
    run("0")
    assert not (etc / "lwgate").exists()


def test_unit_passes_systemd_analyze(packages):
    unit = ROOT / "systemd" / "lwgate.service"
    r = sh("systemd-analyze", "security", "--offline=true", str(unit), check=False)
    assert "Overall exposure level for lwgate.service" in r.stdout, r.stdout + r.stderr
    score = float(r.stdout.split("Overall exposure level for lwgate.service:")[1].split()[0])
    # Issue 15's bound: the features that came later (serial ports, the modem, the
    # system bus for the installer units) must not raise it.
    assert score <= 1.7, f"unit sandboxing regressed: exposure {score}"


def already_installed():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "lwgate"], capture_output=True, text=True)
    return "installed" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a deb needs root (CI runs as root)")
def test_deb_installs_verifies_and_purges(packages):
    """Installs the deb for real: maintainer scripts, the account, then `systemd-analyze verify`
    on the unit as installed (verify needs the ExecStart binary to exist)."""
    if already_installed():
        pytest.skip("lwgate is installed on this machine; not touching it")
    if os.path.exists("/etc/lwgate"):
        pytest.skip("/etc/lwgate exists without the package; not touching it")
    deb, _ = packages
    try:
        out = sh("dpkg", "-i", str(deb)).stdout
        assert "systemctl enable --now lwgate" in out
        assert sh("getent", "passwd", "lwgate").returncode == 0
        assert "dialout" in sh("id", "-nG", "lwgate").stdout
        st = os.stat("/etc/lwgate/lwgate.toml")
        assert oct(st.st_mode & 0o777) == "0o640"
        for unit in ("lwgate.service", "lwgate-install.service", "lwgate-software@.service"):
            r = sh("systemd-analyze", "verify", f"/lib/systemd/system/{unit}", check=False)
            assert r.returncode == 0 and r.stderr.strip() == "", (unit, r.stderr)
        r = sh("/usr/bin/lwgate", "check-config")
        assert "/etc/lwgate/lwgate.toml: OK" in r.stdout
        assert os.path.isdir("/etc/lwgate/objects")  # made by tmpfiles, owned by no package
        assert sh("dpkg", "-S", "/usr/share/lwgate/objects").stdout.startswith("lwgate:")
        # An operator's file keeps its directory through a purge ...
        with open("/etc/lwgate/objects/local.xml", "w") as f:
            f.write("<LWM2M/>")
        sh("dpkg", "--purge", "lwgate")
        assert os.path.exists("/etc/lwgate/objects/local.xml")
        assert not os.path.exists("/etc/lwgate/lwgate.toml") and not os.path.exists("/etc/lwgate/devices.d")
        os.unlink("/etc/lwgate/objects/local.xml")
        # ... and a purge with nothing left behind removes all of /etc/lwgate.
        sh("dpkg", "-i", str(deb))
    finally:
        sh("dpkg", "--purge", "lwgate", check=False)
    leftovers = [p for p in ("/etc/lwgate", "/var/lib/lwgate", "/usr/share/lwgate") if os.path.exists(p)]
    assert not leftovers, leftovers
