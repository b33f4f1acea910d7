"""The deb and the rpm, built by scripts/package and inspected as a distribution would."""

import os
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
    for tool in ("cargo-deb", "cargo-generate-rpm", "dpkg-deb", "rpm", "lintian"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: .ci/run installs it")
    dist = ROOT / "dist"
    for old in dist.glob("lwgate*"):
        old.unlink()
    sh(str(ROOT / "scripts" / "package"), cwd=ROOT, timeout=1800)
    debs = list(dist.glob(f"lwgate_{VERSION}-*_*.deb"))
    rpms = list(dist.glob(f"lwgate-{VERSION}-*.rpm"))
    assert len(debs) == 1 and len(rpms) == 1, list(dist.iterdir())
    return debs[0], rpms[0]


def enabling_lines(script):
    """Commands (not comments or messages) that would enable or start the service."""
    cmds = [ln.strip() for ln in script.splitlines()]
    cmds = [c for c in cmds if c and not c.startswith(("#", "echo"))]
    return [c for c in cmds if " enable" in c or " start " in c or c.endswith(" start")]


EXPECTED = [
    "/usr/bin/lwgate",
    "/etc/lwgate/lwgate.toml",
    "/usr/lib/sysusers.d/lwgate.conf",
    "/usr/lib/tmpfiles.d/lwgate.conf",
    "/usr/share/doc/lwgate/README.md",
]


def test_deb_contents(packages):
    deb, _ = packages
    listing = sh("dpkg-deb", "-c", str(deb)).stdout
    for path in EXPECTED + [
        "/lib/systemd/system/lwgate.service",
        "/usr/share/doc/lwgate/copyright",
        "/usr/share/man/man8/lwgate.8.gz",
    ]:
        assert f".{path}\n" in listing, f"{path} missing from {deb.name}:\n{listing}"
    assert sh("dpkg-deb", "-f", str(deb), "Package").stdout.strip() == "lwgate"
    ctrl = ROOT / "dist" / "ctrl"
    shutil.rmtree(ctrl, ignore_errors=True)
    sh("dpkg-deb", "-e", str(deb), str(ctrl))
    assert "/etc/lwgate/lwgate.toml" in (ctrl / "conffiles").read_text().split()
    postinst = (ctrl / "postinst").read_text()
    assert "systemd-sysusers" in postinst
    assert not enabling_lines(postinst), "must not enable or start on install"


def test_rpm_contents(packages):
    _, rpm = packages
    files = sh("rpm", "-qlp", str(rpm)).stdout.split()
    for path in EXPECTED + ["/usr/lib/systemd/system/lwgate.service", "/usr/share/man/man8/lwgate.8"]:
        assert path in files, f"{path} missing from {rpm.name}: {files}"
    flags = sh("rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", str(rpm)).stdout
    conf = [line for line in flags.splitlines() if line.endswith("/etc/lwgate/lwgate.toml")]
    assert conf and "c" in conf[0].split()[0] and "n" in conf[0].split()[0], flags  # %config(noreplace)
    scripts = sh("rpm", "-qp", "--scripts", str(rpm)).stdout
    assert "systemd-sysusers" in scripts and not enabling_lines(scripts)


def test_lintian_reports_no_errors(packages):
    deb, _ = packages
    r = sh("lintian", "--fail-on", "error", str(deb), check=False)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    assert not errors and r.returncode == 0, r.stdout + r.stderr


def test_unit_passes_systemd_analyze(packages):
    unit = ROOT / "systemd" / "lwgate.service"
    r = sh("systemd-analyze", "security", "--offline=true", str(unit), check=False)
    assert "Overall exposure level for lwgate.service" in r.stdout, r.stdout + r.stderr
    score = float(r.stdout.split("Overall exposure level for lwgate.service:")[1].split()[0])
    assert score <= 2.5, f"unit sandboxing regressed: exposure {score}"


def already_installed():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "lwgate"], capture_output=True, text=True)
    return "installed" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a deb needs root (CI runs as root)")
def test_deb_installs_verifies_and_purges(packages):
    """Installs the deb for real: maintainer scripts, the account, then `systemd-analyze verify`
    on the unit as installed (verify needs the ExecStart binary to exist)."""
    if already_installed():
        pytest.skip("lwgate is installed on this machine; not touching it")
    deb, _ = packages
    try:
        out = sh("dpkg", "-i", str(deb)).stdout
        assert "systemctl enable --now lwgate" in out
        assert sh("getent", "passwd", "lwgate").returncode == 0
        assert "dialout" in sh("id", "-nG", "lwgate").stdout
        st = os.stat("/etc/lwgate/lwgate.toml")
        assert oct(st.st_mode & 0o777) == "0o640"
        r = sh("systemd-analyze", "verify", "/lib/systemd/system/lwgate.service", check=False)
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
        r = sh("/usr/bin/lwgate", "check-config")
        assert "/etc/lwgate/lwgate.toml: OK" in r.stdout
    finally:
        sh("dpkg", "--purge", "lwgate", check=False)
    assert not os.path.exists("/etc/lwgate/lwgate.toml")
    assert not os.path.exists("/var/lib/lwgate")
