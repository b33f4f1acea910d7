"""Independent decoders for the payload formats, so tests do not trust our codec."""

import json
import struct

import cbor2


def tlv_decode(data: bytes):
    """Returns a list of (kind, id, value-bytes or children) per spec 6.4.3."""
    out = []
    i = 0
    while i < len(data):
        t = data[i]
        i += 1
        kind = t >> 6
        if t & 0x20:
            ident = struct.unpack(">H", data[i : i + 2])[0]
            i += 2
        else:
            ident = data[i]
            i += 1
        ltype = (t >> 3) & 3
        if ltype == 0:
            length = t & 7
        else:
            length = int.from_bytes(data[i : i + ltype], "big")
            i += ltype
        body = data[i : i + length]
        assert len(body) == length, "TLV truncated"
        i += length
        if kind in (0, 2):
            out.append((kind, ident, tlv_decode(body)))
        else:
            out.append((kind, ident, body))
    return out


def tlv_resources(data: bytes):
    """Flattens an instance-level TLV into {"rid" or "rid/ri": bytes}."""
    flat = {}
    for kind, rid, val in tlv_decode(data):
        if kind == 3:
            flat[str(rid)] = val
        elif kind == 2:
            for _, ri, v in val:
                flat[f"{rid}/{ri}"] = v
        elif kind == 0:
            for k, v in tlv_resources_from_list(val).items():
                flat[f"{rid}/{k}"] = v
    return flat


def tlv_resources_from_list(items):
    flat = {}
    for kind, rid, val in items:
        if kind == 3:
            flat[str(rid)] = val
        elif kind == 2:
            for _, ri, v in val:
                flat[f"{rid}/{ri}"] = v
    return flat


def tlv_int(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


def tlv_encode(kind, ident, body: bytes) -> bytes:
    t = kind << 6
    idb = ident.to_bytes(2, "big") if ident > 255 else bytes([ident])
    if ident > 255:
        t |= 0x20
    n = len(body)
    if n < 8:
        t |= n
        lb = b""
    elif n < 256:
        t |= 1 << 3
        lb = bytes([n])
    elif n < 65536:
        t |= 2 << 3
        lb = n.to_bytes(2, "big")
    else:
        t |= 3 << 3
        lb = n.to_bytes(3, "big")
    return bytes([t]) + idb + lb + body


def senml_json(data: bytes):
    """{full name: value} from SenML JSON."""
    return _senml(json.loads(data), {"bn": "bn", "n": "n", "v": "v", "vs": "vs", "vb": "vb", "vd": "vd"})


def senml_cbor(data: bytes):
    return _senml(cbor2.loads(data), {"bn": -2, "n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8})


def _senml(records, k):
    out = {}
    bn = ""
    for r in records:
        if k["bn"] in r:
            bn = r[k["bn"]]
        name = bn + r.get(k["n"], "")
        for key in ("v", "vs", "vb", "vd"):
            if k[key] in r:
                out[name] = r[k[key]]
        if "vlo" in r:
            out[name] = r["vlo"]
    return out


def lwm2m_json(data: bytes):
    doc = json.loads(data)
    bn = doc.get("bn", "")
    out = {}
    for e in doc["e"]:
        name = bn + e.get("n", "")
        for key in ("v", "sv", "bv", "ov"):
            if key in e:
                out[name] = e[key]
    return out


def links(text: str):
    """Parses link-format into [(target, {attr: value})]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        target, _, rest = part.partition(">")
        attrs = {}
        for a in rest.split(";")[1:]:
            k, _, v = a.partition("=")
            attrs[k] = v.strip('"') if v else None
        out.append((target.lstrip("<"), attrs))
    return out
