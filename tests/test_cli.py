"""The one-shot commands: check-config, version, status errors."""

import os
import signal
import subprocess

import pytest

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


def check(lwgate, cfg, text):
    cfg.write_text(text)
    return run(lwgate, "check-config", "--config", str(cfg))


def test_unbracketed_ipv6_uri_is_rejected(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, '[[server]]\nssid = 101\nuri = "coap://::1"\n')
    assert r.returncode == 1
    assert (
        f'{cfg}:3: server[0].uri: expected an IPv6 address in brackets, e.g. "coap://[::1]:5683", got "coap://::1"'
        in r.stderr
    )


def test_bracketed_ipv6_uri_is_accepted(lwgate, tmp_path):
    r = check(lwgate, tmp_path / "lwgate.toml", '[[server]]\nssid = 101\nuri = "coap://[::1]:5683"\n')
    assert r.returncode == 0, r.stderr
    assert "[101] coap://[::1]:5683" in r.stdout


@pytest.mark.parametrize(
    "uri, why",
    [
        ("coap://host name", "(a space is not allowed)"),
        ("coap://h:0", 'expected a port from 1 to 65535, got "0"'),
        ("coap://h:65536", 'expected a port from 1 to 65535, got "65536"'),
        ("coap://:5683", "expected a host"),
        ("coap://user@h", "expected no user name (user@)"),
        ("coap://h/?ep=x", "expected no query"),
        ("coap://h#x", "expected no fragment"),
    ],
)
def test_uri_that_cannot_work_is_rejected(lwgate, tmp_path, uri, why):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, f'[[server]]\nssid = 101\nuri = "{uri}"\n')
    assert r.returncode == 1
    assert f"{cfg}:3: server[0].uri: " in r.stderr and why in r.stderr, r.stderr


def test_coaps_without_security_says_which_key_is_missing(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, '[[server]]\nssid = 101\nuri = "coaps://h"\n')
    assert r.returncode == 1
    assert f"{cfg}:1: server[0].security: coaps:// needs security = psk, rpk or certificate" in r.stderr, r.stderr


def test_ssid_out_of_range_names_the_range_and_line(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, '[[server]]\nuri = "coap://127.0.0.1"\nssid = 70000\n')
    assert r.returncode == 1
    assert f"{cfg}:3: server[0].ssid: expected a Short Server ID, a whole number from 1 to 65534, got 70000" in r.stderr
    assert "u16" not in r.stderr


def test_single_bracket_server_table_says_double_brackets(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, '[server]\nuri = "coap://127.0.0.1"\nssid = 101\n')
    assert r.returncode == 1
    assert f"{cfg}:1: server: expected one [[server]] table per server" in r.stderr
    assert "double brackets" in r.stderr
    assert "sequence" not in r.stderr and "map" not in r.stderr


def test_value_check_errors_have_line_numbers(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(
        lwgate,
        cfg,
        '[[server]]\nuri = "coap://127.0.0.1:0"\nssid = 101\nbinding = "X"\n'
        '[[server]]\nuri = "coap://127.0.0.1"\n\nssid = 101\n',
    )
    assert r.returncode == 1
    assert f'{cfg}:2: server[0].uri: expected a port from 1 to 65535, got "0"' in r.stderr
    assert f'{cfg}:4: server[0].binding: expected one of U, UQ, S, SQ, US, UQS, got "X"' in r.stderr
    assert f"{cfg}:8: server[1].ssid: ssid 101 is used by an earlier [[server]] table" in r.stderr


def test_toml_syntax_error_is_one_message(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    r = check(lwgate, cfg, '[log]\nlevel = "info"\n[store\npath = "/tmp/x.db"\n')
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{cfg}:3:7: TOML syntax error: invalid table header, expected `.` or `]`",
        f"{cfg}: configuration is NOT valid",
    ]


def test_bad_device_id_is_named_as_device_id(lwgate, tmp_path):
    cfg = tmp_path / "lwgate.toml"
    cfg.write_text("")
    (tmp_path / "devices.d").mkdir()
    (tmp_path / "devices.d" / "pump.toml").write_text('[device]\nprotocol = "mqtt"\nid = "pump 1"\n')
    r = run(lwgate, "check-config", "--config", str(cfg))
    assert r.returncode == 1
    assert (
        f"{tmp_path / 'devices.d' / 'pump.toml'}:3: device.id: "
        "expected an id of 1 to 64 letters, digits, '.', '_' or '-', got \"pump 1\""
    ) in r.stderr


@pytest.mark.parametrize("args", [["version"], ["check-config", "--config", str(ROOT / "etc" / "lwgate.toml")]])
def test_closed_pipe_does_not_panic(lwgate, args):
    # The reader is gone before lwgate writes its first byte, so the first write
    # fails whatever the pipe buffer holds (`| head -c1` let small outputs through).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([str(lwgate), *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert "panicked" not in r.stderr
    # Killed by SIGPIPE, as a Unix tool is; an exit without a word would do too.
    assert r.returncode == -signal.SIGPIPE or (r.returncode == 0 and r.stderr == ""), (r.returncode, r.stderr)
