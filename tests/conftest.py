"""Black-box tests: they drive the built `lwgate` binary as an operator would."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lwgate_bin() -> Path:
    env = os.environ.get("LWGATE_BIN")
    if env:
        return Path(env)
    return ROOT / "target" / "debug" / "lwgate"


@pytest.fixture(scope="session")
def lwgate():
    path = lwgate_bin()
    if not path.exists():
        pytest.fail(f"{path} not built: run `cargo build -p lwgate` first (scripts/test does)")
    return path


def wait_for(pred, timeout, what):
    """Polls `pred` until it gives something true (returned), failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Agent:
    """One `lwgate run` process with its own config tree in a temp directory."""

    def __init__(self, binary: Path, tmp: Path, extra: str = "", servers: str | None = None, store: str = ""):
        self.binary = binary
        self.dir = tmp
        self.socket = tmp / "run" / "control.sock"
        self.config = tmp / "lwgate.toml"
        self.devices = tmp / "devices.d"
        self.devices.mkdir(exist_ok=True)
        if servers is None:
            servers = '[[server]]\nuri = "coap://127.0.0.1:5683"\nssid = 101\nlifetime = 300\n'
        self.config.write_text(
            f'[endpoint]\nname = "test-gw"\n'
            f'[store]\npath = "{tmp / "state" / "state.db"}"\n{store}\n'
            f'[control]\nsocket = "{self.socket}"\n'
            f'[log]\nlevel = "debug"\n'
            f"{extra}\n{servers}"
        )
        self.proc = None
        self.log = tmp / "lwgate.log"

    def cli(self, *args, check=True, env=None, timeout=30):
        r = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"lwgate {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self, env=None, wait=True):
        self.logf = open(self.log, "w")
        # exec through sh so WATCHDOG_PID can name the agent's own pid, as systemd does.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" run --config "$1"', str(self.binary), str(self.config)],
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lwgate exited {self.proc.returncode}: {self.log.read_text()}")
            if self.socket.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.socket))
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"control socket never appeared: {self.log.read_text()}")

    def status_json(self):
        import json

        r = self.cli("status", "--config", str(self.config), "--json")
        return json.loads(r.stdout)

    def stop(self, sig=15, timeout=15.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.logf.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agent(lwgate, tmp_path):
    made = []

    def make(**kw):
        a = Agent(lwgate, tmp_path, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.kill()
