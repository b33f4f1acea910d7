"""An end device's own firmware update (/prefix/5): a Modbus/TCP meter (pymodbus)
whose device file has a [firmware] table. The server (aiocoap) writes a Package
URI to /m1/5/0/1; lwgate downloads it over HTTP and checks it; Execute /m1/5/0/2
runs the device's install command, a real Modbus client here that writes the
image into the meter's registers, and its exit status is the verdict: Result 1,
or 8 with State back to Downloaded. The gateway itself has no /5 without its own
[firmware]; the device's update survives a kill -9 of lwgate."""

import signal
import sys

import pytest
from aiocoap import Code

from conftest import ROOT, wait_for
from lwm2m_formats import links
from lwm2m_server import TEXT, TestServer
from modbus_sim import ModbusSim
from test_firmware import HttpRepo

EP = "test-gw"

# The "flash tool": writes the image's first 8 bytes as 4 registers at 100 of
# the unit, then reads them back, as a vendor's tool would verify its write.
FLASH = '''
import sys
from pymodbus.client import ModbusTcpClient
port, unit, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
image = open(path, "rb").read()[:8]
regs = [image[i] << 8 | image[i + 1] for i in range(0, 8, 2)]
c = ModbusTcpClient("127.0.0.1", port=port)
if not c.connect():
    sys.exit("meter unreachable")
kw = {"device_id": unit} if "device_id" in ModbusTcpClient.write_registers.__code__.co_varnames else {"slave": unit}
c.write_registers(100, regs, **kw)
back = c.read_holding_registers(100, count=4, **kw).registers
print("flashed", back)
sys.exit(0 if back == regs else 4)
'''


def meter_file(port, flash, unit=1):
    return f"""
[device]
id = "meter-1"
prefix = "m1"
protocol = "modbus-tcp"
firmware_version = "1.0"

[modbus]
host = "127.0.0.1"
port = {port}
unit = 1
poll_ms = 200
timeout_ms = 300
retries = 0

[[modbus.point]]
path = "3303/0/5700"
register = "holding-register"
address = 0
type = "f32"

[firmware]
install = ["{sys.executable}", "{flash}", "{port}", "{unit}", "{{file}}"]
max_size = 65536
"""


@pytest.fixture
def meter(agent, tmp_path):
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    repo = HttpRepo(repo_dir)
    sim = ModbusSim(units=(1,))
    sim.set_float(1, 0, 21.5)
    flash = tmp_path / "flash.py"
    flash.write_text(FLASH)
    srv = TestServer()
    a = agent(
        extra=f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n',
        servers=f'[[server]]\nuri = "{srv.uri}"\nssid = 101\nlifetime = 300\n',
    )
    a.flash = flash
    (a.devices / "meter.toml").write_text(meter_file(sim.port, flash))
    a.start()
    srv.wait_registered(EP, 15)
    yield a, srv, sim, repo, repo_dir
    a.stop()
    srv.close()
    sim.stop()
    repo.close()


def text(srv, path):
    r = srv.read(EP, path, accept=TEXT)
    assert r.code == Code.CONTENT, (path, r.code, r.payload)
    return r.payload.decode()


def wait_value(srv, path, want, a, timeout=30):
    try:
        wait_for(lambda: text(srv, path) == want, timeout, f"{path} = {want}")
    except AssertionError:
        raise AssertionError(
            f"{path} = {text(srv, path)}, result {text(srv, path.rsplit('/', 1)[0] + '/5')}; "
            + a.log.read_text()[-3000:]
        ) from None


def test_an_end_devices_image_goes_to_it_through_its_install_command(meter):
    a, srv, sim, repo, repo_dir = meter
    image = bytes([0xCA, 0xFE, 0x02, 0x00, 1, 2, 3, 4]) + bytes(1000)
    (repo_dir / "meter-2.0.bin").write_bytes(image)
    v = srv.read(EP, "/25/0/3", accept=TEXT).payload.decode()
    assert "</5/0>" in v, v
    assert srv.read(EP, "/5/0/3").code == Code.NOT_FOUND, "the gateway has no /5 of its own"
    assert text(srv, "/m1/5/0/3") == "0"
    assert text(srv, "/m1/5/0/9") == "2"
    srv.write_attributes(EP, "/m1/5/0/3", "pmin=0")
    _, notes, cancel = srv.observe(EP, "/m1/5/0/3", accept=TEXT)
    assert srv.write(EP, "/m1/5/0/1", repo.url("meter-2.0.bin").encode(), TEXT).code == Code.CHANGED
    wait_value(srv, "/m1/5/0/3", "2", a)
    assert "device firmware: m1: Downloaded" in a.cli("status", "--config", str(a.config)).stdout
    assert sim.registers(1, 100, 4) == [0, 0, 0, 0]
    assert srv.execute(EP, "/m1/5/0/2").code == Code.CHANGED
    wait_value(srv, "/m1/5/0/3", "0", a)
    assert text(srv, "/m1/5/0/5") == "1", a.log.read_text()[-2000:]
    assert sim.registers(1, 100, 4) == [0xCAFE, 0x0200, 0x0102, 0x0304], "the image reached the meter"
    seen = [n.payload.decode() for n in notes if hasattr(n, "payload")]
    assert "3" in seen and seen[-1] == "0", seen
    cancel()
    log = a.log.read_text()
    assert "installer succeeded" in log and "flashed" in log, log[-2000:]
    # Its values are still the bridge's.
    assert float(text(srv, "/m1/3303/0/5700")) == 21.5


def test_an_install_command_that_fails_is_result_8_and_the_package_stays(meter, tmp_path):
    a, srv, sim, repo, repo_dir = meter
    (repo_dir / "m.bin").write_bytes(bytes(100))
    assert srv.write(EP, "/m1/5/0/1", repo.url("m.bin").encode(), TEXT).code == Code.CHANGED
    wait_value(srv, "/m1/5/0/3", "2", a)
    # The meter goes away before the flash: the tool cannot connect.
    sim.stop()
    assert srv.execute(EP, "/m1/5/0/2").code == Code.CHANGED
    wait_value(srv, "/m1/5/0/5", "8", a)
    assert text(srv, "/m1/5/0/3") == "2"
    st = a.cli("status", "--config", str(a.config)).stdout
    assert "meter unreachable" in st, st
    # Too large for its max_size (65536): 2, nothing downloaded.
    (repo_dir / "big.bin").write_bytes(bytes(70000))
    assert srv.write(EP, "/m1/5/0/1", repo.url("big.bin").encode(), TEXT).code == Code.CHANGED
    wait_value(srv, "/m1/5/0/5", "2", a)
    # A cancel by an empty URI.
    assert srv.write(EP, "/m1/5/0/1", b"", TEXT).code == Code.CHANGED
    wait_value(srv, "/m1/5/0/5", "0", a)


def test_a_downloaded_image_survives_a_kill_9_and_a_reload_without_firmware_drops_5(meter):
    a, srv, sim, repo, repo_dir = meter
    (repo_dir / "m.bin").write_bytes(bytes(100))
    assert srv.write(EP, "/m1/5/0/1", repo.url("m.bin").encode(), TEXT).code == Code.CHANGED
    wait_value(srv, "/m1/5/0/3", "2", a)
    a.kill()
    a.start()
    srv.wait_for(lambda: srv.events.count(("register", EP)) >= 2 or len(srv.registrations[EP].updates) >= 1,
                 30, "back after the kill")
    wait_value(srv, "/m1/5/0/3", "2", a)
    assert text(srv, "/m1/5/0/1") == repo.url("m.bin")
    # The [firmware] table removed, SIGHUP: the device keeps its values, loses its /5.
    f = a.devices / "meter.toml"
    f.write_text(f.read_text().split("[firmware]")[0])
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: srv.read(EP, "/m1/5/0/3").code == Code.NOT_FOUND, 15, "/m1/5 gone")
    v = srv.read(EP, "/25/0/3", accept=TEXT).payload.decode()
    assert "</5/0>" not in v and "</3303/0>" in v, v
