"""A real mosquitto broker for the black-box tests, on a free loopback port, with
its session store on disk so that a restart keeps what it held (the persistent
sessions lwgate relies on). Messages are published and watched with mosquitto's
own clients (mosquitto_pub / mosquitto_sub), an implementation independent of
lwgate's (rumqttc)."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need(cmd):
    if shutil.which(cmd) is None and not os.path.exists(f"/usr/sbin/{cmd}"):
        raise AssertionError(f"{cmd} is missing: apt-get install mosquitto mosquitto-clients")


class Broker:
    def __init__(self, port=None, tls=None):
        """`tls`: (certificate, key, CA) PEM files: the listener speaks TLS (mqtts)."""
        for c in ("mosquitto_pub", "mosquitto_sub"):
            _need(c)
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        _need("mosquitto")
        self.dir = tempfile.mkdtemp(prefix="lwgate-mqtt.")
        # Started as root, mosquitto drops to its own user: it must still be able
        # to save its sessions here.
        os.chmod(self.dir, 0o777)
        self.port = port or _free_port()
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.tls = tls
        with open(self.conf, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\n"
                + (f"certfile {tls[0]}\nkeyfile {tls[1]}\n" if tls else "")
                + "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {self.dir}/\n"
                # Keep what a persistent session misses while its client is away.
                "max_queued_messages 100000\n"
            )
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.exe, "-c", self.conf, "-v"],
            stdout=open(self.log, "a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"mosquitto did not start: {open(self.log).read()[-2000:]}")
                time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its sessions to disk
            self.proc.wait(10)

    def restart(self, down_for=0.0):
        self.stop()
        time.sleep(down_for)
        self.start()

    def publish(self, topic, payload, qos=1, retain=False):
        args = ["mosquitto_pub", *self._where(), "-t", topic, "-q", str(qos)]
        if retain:
            args.append("-r")
        if isinstance(payload, bytes):
            payload = payload.decode()
        subprocess.run(args + ["-m", payload], check=True, timeout=10)

    def publish_many(self, messages, qos=0):
        """Publishes (topic, payload) pairs through one connection (mosquitto_pub -l
        reads payloads from stdin, one topic per call): grouped by topic."""
        by_topic = {}
        for t, p in messages:
            by_topic.setdefault(t, []).append(p)
        for t, ps in by_topic.items():
            subprocess.run(
                ["mosquitto_pub", *self._where(), "-t", t, "-q", str(qos), "-l"],
                input="\n".join(ps) + "\n",
                text=True,
                check=True,
                timeout=60,
            )

    def _where(self):
        if self.tls:
            return ["-h", "localhost", "-p", str(self.port), "--cafile", self.tls[2]]
        return ["-h", "127.0.0.1", "-p", str(self.port)]

    def subscribe(self, topic):
        return Subscription(self, topic)

    def close(self):
        self.stop()
        if os.environ.get("LWGATE_KEEP_MQTT"):
            print(f"mosquitto's directory kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Subscription:
    """mosquitto_sub on a topic filter, collecting (topic, payload) lines."""

    def __init__(self, broker, topic):
        self.messages = []
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic, "-q", "1", "-v"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # subscribed before the test goes on

    def _read(self):
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            self.messages.append((topic, payload))

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
