"""One lwgate configuration (a temp directory with lwgate.toml, devices.d/ and
the state database) and the processes run on it: started, killed with -9,
restarted on the same state database, optionally under strace. Every run's life
(start, when it answered on its control socket, end, how it ended) is recorded:
the ledger needs it to say which values were generated while lwgate ran."""

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import ROOT

EP = "soak-gw"


@dataclass
class Life:
    started: float
    ready: float | None = None
    ended: float | None = None
    how: str = "running"  # "kill -9" | "sigterm" | "exited N"
    pid: int = 0


class Lwgate:
    def __init__(self, binary: Path, tmp: Path, server_uri: str, extra_server: str = "", log_level="debug"):
        self.binary = Path(binary)
        self.dir = Path(tmp)
        self.socket = self.dir / "run" / "control.sock"
        self.config = self.dir / "lwgate.toml"
        self.devices = self.dir / "devices.d"
        self.devices.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "state" / "state.db"
        self.config.write_text(
            f'[endpoint]\nname = "{EP}"\n'
            f'[store]\npath = "{self.db}"\n'
            f'[control]\nsocket = "{self.socket}"\n'
            f'[log]\nlevel = "{log_level}"\n'
            f'[lwm2m]\nobject_dirs = ["{ROOT / "objects"}"]\n'
            f'[[server]]\nuri = "{server_uri}"\nssid = 101\nlifetime = 300\n{extra_server}\n'
        )
        self.log = self.dir / "lwgate.log"
        self.lives: list[Life] = []
        self.proc = None

    def start(self, wrap: list[str] | None = None, wait=True, timeout=20.0):
        logf = open(self.log, "a")
        logf.write(f"==== start {time.time():.3f}\n")
        logf.flush()
        cmd = [*(wrap or []), str(self.binary), "run", "--config", str(self.config)]
        life = Life(started=time.time())
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        life.pid = self.proc.pid
        self.lives.append(life)
        if wait:
            self.wait_ready(timeout)
        return life

    def wait_ready(self, timeout=20.0):
        life = self.lives[-1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lwgate exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                life.ready = time.time()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"lwgate's control socket never answered:\n{self.tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        life = self.lives[-1]
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            life.how = "kill -9"
        else:
            life.how = f"exited {self.proc.returncode}"
        life.ended = time.time()

    def stop(self, timeout=15.0):
        life = self.lives[-1]
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
                life.how = "sigterm timed out, killed"
            else:
                life.how = "sigterm" if rc == 0 else f"exited {rc} after sigterm"
        else:
            life.how = life.how if life.how != "running" else f"exited {self.proc.returncode}"
        life.ended = time.time()

    def status(self):
        r = subprocess.run(
            [str(self.binary), "status", "--config", str(self.config), "--json"],
            capture_output=True, text=True, timeout=10,
        )
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def rss_kib(self):
        """VmRSS of the running process, KiB."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self):
        """utime + stime of the running process, s."""
        try:
            f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def tail(self, n=4000):
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""
