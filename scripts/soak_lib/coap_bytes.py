"""The datagrams of the load, pure: well-formed requests and the malformed kinds,
each with the answers RFC 7252 and LwM2M allow, built byte by byte (the
malformed ones cannot be built with a CoAP library, which refuses them).

Allowed answers are sets of: a response code "2.05", "4.xx" (any client error),
"RST", "none" (no answer: what a receiver does with what it cannot even parse a
message ID from, or must silently ignore), "any"."""

import random
import struct

CON, NON, ACK, RST = 0, 1, 2, 3
GET = 1
URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT, OBSERVE = 11, 12, 15, 17, 6
TEXT, LINK, TLV, SENML_JSON = 0, 40, 11542, 110


def header(mtype, code, mid, token=b"", version=1):
    return bytes([(version << 6) | (mtype << 4) | len(token), code, mid >> 8 & 0xFF, mid & 0xFF]) + token


def _ext(n):
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    return 14, struct.pack(">H", n - 269)


def options(opts):
    """(number, bytes) pairs, encoded in number order (RFC 7252 3.1)."""
    out = b""
    last = 0
    for num, val in sorted(opts, key=lambda o: o[0]):
        d, dx = _ext(num - last)
        ln, lx = _ext(len(val))
        out += bytes([d << 4 | ln]) + dx + lx + val
        last = num
    return out


def uint(n):
    if n == 0:
        return b""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def request(mtype, mid, token, path, accept=None, code=GET, extra=()):
    opts = [(URI_PATH, s.encode()) for s in path.strip("/").split("/") if s]
    if accept is not None:
        opts.append((ACCEPT, uint(accept)))
    opts.extend(extra)
    return header(mtype, code, mid, token) + options(opts)


# kind -> (weight, allowed answers, what it is)
KINDS = {
    "read": (30, {"2.05"}, "CON GET of a resource, an instance, an end device's value, /25/0 (text, TLV, SenML)"),
    "read-non": (10, {"2.05"}, "NON GET: answered NON"),
    "discover": (20, {"2.05"}, "CON GET Accept 40 (link format) of an object and an end device's object"),
    "bad-path": (8, {"4.xx"}, "CON GET /3/x, /3/0/0/0/0, /77, /nodev/3/0"),
    "critical-option": (4, {"4.02"}, "CON GET with unknown critical option 2049: 4.02 (5.4.1)"),
    "unknown-method": (3, {"4.05"}, "CON with code 0.31: 4.05 (5.8)"),
    "tkl-9": (4, {"RST"}, "CON, token length 9: message format error (3)"),
    "tkl-9-non": (2, {"none", "RST"}, "NON, token length 9: ignored or RST (4.3)"),
    "truncated-option": (4, {"RST", "4.00", "4.02"}, "CON, an option longer than the datagram"),
    "marker-no-payload": (3, {"RST", "4.00"}, "CON, payload marker without payload (3)"),
    "delta-15": (3, {"RST", "4.00", "4.02"}, "CON, option delta 15 that is no payload marker (3.1)"),
    "empty-with-token": (2, {"RST"}, "CON Empty (0.00) with a token: format error (4.1)"),
    "stray-response": (2, {"RST"}, "CON 2.05 nobody asked for: rejected (4.2)"),
    "short-header": (2, {"none"}, "1-3 bytes: no message ID to answer"),
    "bad-version": (2, {"none"}, "CON with version 0, 2 or 3: silently ignored (3)"),
    "garbage": (5, {"any"}, "CON v1 header + random bytes (RST or a response: anything but silence)"),
}


def make(kind, mid, token, rng: random.Random):
    """The datagram of one request of `kind` with message ID `mid` and (where it
    has one) token `token` (8 bytes)."""
    if kind == "read":
        path, accept = rng.choice([("/3/0/0", None), ("/3/0", TLV), ("/soak/3300/0/5700", None),
                                   ("/25/0", SENML_JSON), ("/1/0/1", TEXT)])
        return request(CON, mid, token, path, accept)
    if kind == "read-non":
        return request(NON, mid, token, rng.choice(["/3/0/1", "/soak/3300/0/5700"]))
    if kind == "discover":
        return request(CON, mid, token, rng.choice(["/3", "/soak/3300", "/1/0"]), LINK)
    if kind == "bad-path":
        return request(CON, mid, token, rng.choice(["/3/x", "/3/0/0/0/0", "/77", "/nodev/3/0"]))
    if kind == "critical-option":
        return request(CON, mid, token, "/3/0", extra=[(2049, b"\x01")])
    if kind == "unknown-method":
        return request(CON, mid, token, "/3/0", code=0x1F)
    if kind == "tkl-9":
        return bytes([0x49, GET, mid >> 8, mid & 0xFF]) + bytes(9)
    if kind == "tkl-9-non":
        return bytes([0x59, GET, mid >> 8, mid & 0xFF]) + bytes(9)
    if kind == "truncated-option":
        return header(CON, GET, mid, token) + bytes([0xB3]) + b"3"  # Uri-Path of 3 bytes, 1 there
    if kind == "marker-no-payload":
        return request(CON, mid, token, "/3/0/0") + b"\xff"
    if kind == "delta-15":
        return header(CON, GET, mid, token) + bytes([0xF1, 0x00])
    if kind == "empty-with-token":
        return header(CON, 0, mid, token)
    if kind == "stray-response":
        return header(CON, 0x45, mid, token) + b"\xff" + b"21.5"
    if kind == "short-header":
        return bytes([0x40, GET, mid >> 8][: rng.randint(1, 3)])
    if kind == "bad-version":
        return header(CON, GET, mid, token, version=rng.choice([0, 2, 3])) + options([(URI_PATH, b"3")])
    if kind == "garbage":
        tkl = rng.randint(0, 8)
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        return bytes([0x40 | tkl, rng.randrange(256), mid >> 8, mid & 0xFF]) + body
    raise ValueError(kind)


def parse(data):
    """(type, code "c.dd", mid, token, options {number: [bytes]}) of a datagram
    lwgate sent, or None if it is no CoAP message."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    tkl = data[0] & 0x0F
    mtype = data[0] >> 4 & 3
    code = f"{data[1] >> 5}.{data[1] & 0x1F:02d}"
    mid = data[2] << 8 | data[3]
    token = bytes(data[4 : 4 + tkl])
    opts = {}
    i, num = 4 + tkl, 0
    while i < len(data) and data[i] != 0xFF:
        d, ln = data[i] >> 4, data[i] & 0x0F
        i += 1
        if d == 13:
            d, i = data[i] + 13, i + 1
        elif d == 14:
            d, i = struct.unpack_from(">H", data, i)[0] + 269, i + 2
        if ln == 13:
            ln, i = data[i] + 13, i + 1
        elif ln == 14:
            ln, i = struct.unpack_from(">H", data, i)[0] + 269, i + 2
        num += d
        opts.setdefault(num, []).append(bytes(data[i : i + ln]))
        i += ln
    payload = bytes(data[i + 1 :]) if i < len(data) else b""
    return mtype, code, mid, token, opts, payload


def allowed(kind, answer):
    """Whether `answer` ("RST", "none", "2.05", "4.04", ...) is one the spec allows."""
    ok = KINDS[kind][1]
    if "any" in ok:
        return answer != "none"
    if answer in ok:
        return True
    return answer.startswith("4.") and "4.xx" in ok
