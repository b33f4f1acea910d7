"""The one-shot commands: check-config, version, status errors."""

import subprocess

from conftest import ROOT


def run(lwgate, *args, env=None):
    import os

    return subprocess.run(
        [str(lwgate), *args], capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}
    )


def test_packaged_config_is_valid(lwgate):
    r = run(lwgate, "check-config", "--config", str(ROOT / "etc" / "lwgate.toml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "[101] coap://127.0.0.1:5683" in r.stdout


def test_wrong_type_names_file_and_key(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    cfg.write_text('[[server]]\nuri = "coap://127.0.0.1"\nssid = 101\nlifetime = "fast"\n')
    r = run(lwgate, "check-config", "--config", str(cfg))
    assert r.returncode == 1
    assert f'{cfg}:4: server[0].lifetime: expected a positive number of seconds, got string "fast"' in r.stderr


def test_unknown_key_is_rejected(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    cfg.write_text('[store]\npath = "/tmp/x.db"\ncompress = true\n')
    r = run(lwgate, "check-config", "--config", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:3: store.compress: unknown key, expected `path`" in r.stderr


def test_broken_device_file_is_named(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    cfg.write_text("")
    (tmp_path / "devices.d").mkdir()
    (tmp_path / "devices.d" / "meter.toml").write_text('[device]\nid = "12"\nprotocol = "mqtt"\n')
    r = run(lwgate, "check-config", "--config", str(cfg))
    assert r.returncode == 1
    assert "meter.toml:2: device.id: expected an id that is not purely numeric" in r.stderr
    assert "expected a prefix" not in r.stderr, "the key is the id, not a prefix"


def test_lwgate_config_env_is_the_default(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    cfg.write_text('[endpoint]\nname = "from-env"\n')
    r = run(lwgate, "check-config", env={"LWGATE_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert "endpoint: from-env" in r.stdout


def test_missing_config_file(lwgate, tmp_path):
    r = run(lwgate, "check-config", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 1
    assert "nope.toml: cannot read the file" in r.stderr


def test_version(lwgate):
    r = run(lwgate, "version")
    assert r.returncode == 0
    assert r.stdout.startswith("lwgate 0.")


def test_closed_pipe_does_not_panic(lwgate):
    r = subprocess.run(
        f"{lwgate} check-config --config {ROOT / 'etc' / 'lwgate.toml'} | head -c1",
        shell=True, capture_output=True, text=True, timeout=30,
    )
    assert "panicked" not in r.stderr
