#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/seed-*) from what
the repository already holds: the spec's TLV/JSON/SenML examples in the agent's
codec tests, objects/*.xml, the UICC fixture's card files, the modem vectors,
etc/lwgate.toml with devices.d/*.example and docs/CONFIG.md's examples, the
minisign fixtures, and real CoAP requests and responses built here. Standard
library only. Run it again after changing a target's input format; inputs
that scripts/fuzz --keep merged (40-hex names) are kept.

    python3 fuzz/seeds/make_seeds.py
"""
import ast
import hashlib
import json
import random
import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / 'fuzz' / 'corpus'
written = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]
    (d / f'seed-{safe}-{hashlib.sha1(data).hexdigest()[:8]}').write_bytes(data)
    written[target] = written.get(target, 0) + 1


def clear():
    if OUT.is_dir():
        for f in OUT.glob('*/seed-*'):
            f.unlink()


# --- CoAP (RFC 7252) ---------------------------------------------------------
GET, POST, PUT, DELETE, FETCH, PATCH, IPATCH = 1, 2, 3, 4, 5, 6, 7
CREATED, DELETED, VALID, CHANGED, CONTENT, CONTINUE = 65, 66, 67, 68, 69, 95
BAD_REQUEST, NOT_FOUND = 128, 132
CON, NON, ACK, RST = 0, 1, 2, 3
O_ETAG, O_OBSERVE, O_LOCATION, O_PATH, O_CF, O_QUERY, O_ACCEPT = 4, 6, 8, 11, 12, 15, 17
O_BLOCK2, O_BLOCK1, O_SIZE2, O_SIZE1 = 23, 27, 28, 60
TEXT, LINK, OPAQUE, SENML_JSON, SENML_CBOR, TLV, LWM2M_JSON = 0, 40, 42, 110, 112, 11542, 11543


def uint(n):
    return n.to_bytes((n.bit_length() + 7) // 8, 'big') if n else b''


def block(num, more, szx):
    return uint(num << 4 | (8 if more else 0) | szx)


def _ext(n):
    if n < 13:
        return n, b''
    if n < 269:
        return 13, bytes([n - 13])
    return 14, (n - 269).to_bytes(2, 'big')


def coap(code, path='', typ=CON, mid=0x1234, token=b'\x01\x02', opts=(), query=(), payload=b''):
    options = [(O_PATH, s.encode()) for s in path.strip('/').split('/') if s]
    options += [(O_QUERY, q.encode()) for q in query]
    options += list(opts)
    options.sort(key=lambda o: o[0])  # stable: repeated options keep their order
    out = bytes([0x40 | typ << 4 | len(token), code]) + mid.to_bytes(2, 'big') + token
    last = 0
    for num, val in options:
        if isinstance(val, int):
            val = uint(val)
        d, dx = _ext(num - last)
        n, nx = _ext(len(val))
        out += bytes([d << 4 | n]) + dx + nx + val
        last = num
    if isinstance(payload, str):
        payload = payload.encode()
    return out + (b'\xff' + payload if payload else b'')


# --- CBOR (RFC 8949), enough for SenML ---------------------------------------
def cbor(v):
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << 8 * size:
                return bytes([major << 5 | ai]) + n.to_bytes(size, 'big')
    if v is True:
        return b'\xf5'
    if v is False:
        return b'\xf4'
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        return b'\xfb' + struct.pack('>d', v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b''.join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b''.join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


SENML_KEYS = {'bn': -2, 'bt': -3, 'n': 0, 'v': 2, 'vs': 3, 'vb': 4, 't': 6, 'vd': 8, 'vlo': 'vlo'}


def senml_cbor(records):
    return cbor([{SENML_KEYS[k]: (bytes.fromhex(x) if k == 'vd' else x) for k, x in r.items()} for r in records])


def senml_json(records):
    import base64
    out = []
    for r in records:
        r = dict(r)
        if 'vd' in r:
            r['vd'] = base64.urlsafe_b64encode(bytes.fromhex(r['vd'])).decode().rstrip('=')
        out.append(r)
    return json.dumps(out, separators=(',', ':')).encode()


# The spec's Device object example (LwM2M 1.1 TS 7.4.4/7.4.5), as records.
DEVICE = [
    {'bn': '/3/0/', 'n': '0', 'vs': 'Open Mobile Alliance'},
    {'n': '1', 'vs': 'Lightweight M2M Client'},
    {'n': '2', 'vs': '345000123'},
    {'n': '3', 'vs': '1.0'},
    {'n': '6/0', 'v': 1}, {'n': '6/1', 'v': 5},
    {'n': '7/0', 'v': 3800}, {'n': '7/1', 'v': 5000},
    {'n': '9', 'v': 100}, {'n': '10', 'v': 15}, {'n': '11/0', 'v': 0},
    {'n': '13', 'v': 1367491215}, {'n': '14', 'vs': '+02:00'}, {'n': '16', 'vs': 'U'},
]
SERVER = [{'bn': '/1/0/', 'n': '1', 'v': 120}, {'n': '2', 'v': 5}, {'n': '3', 'v': 300},
          {'n': '6', 'vb': True}, {'n': '7', 'vs': 'UQ'}]


# --- The repository's own vectors --------------------------------------------
def rust_vectors():
    """Hex strings and byte-string literals of the agent's codec and client tests."""
    hexes, literals = [], []
    files = [ROOT / 'agent/src/codec/tests.rs', *sorted((ROOT / 'agent/src/lwm2m/client/tests').glob('*.rs')),
             ROOT / 'agent/src/lwm2m/bootstrap/tests.rs']
    for f in files:
        src = f.read_text()
        for m in re.finditer(r'(?:hex\(|: &str = )"([0-9A-Fa-f][0-9A-Fa-f\s]*)"', src):
            h = ''.join(m.group(1).split())
            if len(h) % 2 == 0:
                hexes.append(bytes.fromhex(h))
        for m in re.finditer(r'br#"(.*?)"#', src, re.S):
            literals.append(m.group(1).encode())
        for m in re.finditer(r'\bb"((?:[^"\\]|\\.)*)"', src):
            try:
                literals.append(ast.literal_eval('b"' + m.group(1) + '"'))
            except (ValueError, SyntaxError):
                pass
    return hexes, literals


def uicc():
    """The virtual UICC's functions (tests/fixtures/uicc/uicc_card.py), without
    the vsmartcard imports they do not need."""
    src = (ROOT / 'tests/fixtures/uicc/uicc_card.py').read_text()
    tree = ast.parse(src)
    keep = [n for n in tree.body
            if (isinstance(n, ast.FunctionDef) and n.name in ('tlv', 'm2m_tlv', 'res', 'bootstrap_file', 'dodf'))
            or (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets))]
    ns = {'struct': struct}
    exec(compile(ast.Module(body=keep, type_ignores=[]), 'uicc_card.py', 'exec'), ns)
    return ns


class Card:
    def __init__(self, **kw):
        self.__dict__.update(dict(uri='coap://127.0.0.1:5683', ssid=101, lifetime=300, psk_key=None,
                                  psk_identity='gw', big=0, pad_to=0, dodf='opaque', pin=False), **kw)


def tlv_write(ns, obj_inst, resources):
    return ns['m2m_tlv'](0, obj_inst, b''.join(ns['res'](r, v) for r, v in resources))


# --- Targets -------------------------------------------------------------------
def codecs(hexes, literals):
    for i, h in enumerate(hexes):
        for depth in (1, 2):
            seed('codecs', f'tlv-{i}-d{depth}', bytes([depth]) + h)
    for i, lit in enumerate(literals):
        if lit[:1] in (b'[', b'{', b'<'):
            seed('codecs', f'literal-{i}', bytes([2]) + lit)
    for depth, recs in ((2, DEVICE), (2, SERVER), (0, DEVICE)):
        seed('codecs', f'senml-json-d{depth}', bytes([depth]) + senml_json(recs))
        seed('codecs', f'senml-cbor-d{depth}', bytes([depth]) + senml_cbor(recs))
    seed('codecs', 'senml-opaque', bytes([3]) + senml_json([{'bn': '/3/0/', 'n': '11', 'vd': '0102ff'}]))
    seed('codecs', 'lwm2m-json-bn', bytes([2]) + json.dumps(
        {'bn': '/3/0/', 'bt': 1367491215, 'e': [{'n': '0', 'sv': 'x'}, {'n': '13', 'v': 1, 't': -5},
                                                 {'n': '9', 'bv': False}, {'n': '11/0', 'ov': '3:0'}]}).encode())
    # The first byte is depth + 5 * resource (fuzz_targets/codecs.rs): text of each type.
    for k, text in enumerate((b'42', b'Open Mobile Alliance', b'1367491215', b'\x00\x01\xff', b'1', b'\x7fELF',
                              b'rev B', b'3')):
        seed('codecs', f'text-{k}', bytes([3 + 5 * k]) + text)
        seed('codecs', f'text-{k}-instance', bytes([4 + 5 * k]) + text)
    seed('codecs', 'text-objlnk', b'\x03' + b'3:0')
    seed('codecs', 'link', b'\x00' + b'</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>')


def coap_endpoint():
    # The target matches MID 0 and an all-zero token to its request in flight.
    tok = b'\0' * 8
    for szx in (2, 6):
        seed('coap_endpoint', f'block1-continue-{szx}', b'\xfe'.join(
            coap(CONTINUE, typ=ACK, mid=0, token=tok, opts=[(O_BLOCK1, block(n, True, szx))]) for n in range(3)))
    seed('coap_endpoint', 'block2', b'\xfe'.join(
        coap(CONTENT, typ=ACK, mid=0, token=tok, opts=[(O_BLOCK2, block(n, n < 2, 0)), (O_CF, TEXT), (O_ETAG, b'\x01')],
             payload=b'x' * 16) for n in range(3)))
    seed('coap_endpoint', 'separate', coap(0, typ=ACK, mid=0, token=b'') + b'\xfe'
         + coap(CHANGED, typ=CON, mid=0x777, token=tok, payload=b'ok'))
    seed('coap_endpoint', 'rst', coap(0, typ=RST, mid=0, token=b''))
    seed('coap_endpoint', 'ping', coap(0, typ=CON, mid=0x55, token=b''))
    seed('coap_endpoint', 'notification', coap(CONTENT, typ=CON, mid=0x99, token=tok, opts=[(O_OBSERVE, 7)],
                                                payload=b'1'))
    seed('coap_endpoint', 'size1-too-large', coap(413 // 100 << 5 | 13, typ=ACK, mid=0, token=tok,
                                                  opts=[(O_SIZE1, 1024)]))


def client_requests(ns):
    """Requests a server sends, each as the client_request target frames them."""
    dev_tlv = ns['res'](0, 'Open Mobile Alliance') + ns['res'](3, '1.0')
    srv_tlv = tlv_write(ns, 0, [(1, 120), (2, 5), (3, 300), (6, True), (7, 'UQ')])
    cases = {
        'read-device': [coap(GET, '/3/0')],
        'read-text': [coap(GET, '/3/0/0', opts=[(O_ACCEPT, TEXT)])],
        'read-senml-cbor': [coap(GET, '/3', opts=[(O_ACCEPT, SENML_CBOR)])],
        'read-lwm2m-json': [coap(GET, '/1/0', opts=[(O_ACCEPT, LWM2M_JSON)])],
        'discover': [coap(GET, '/3', opts=[(O_ACCEPT, LINK)]), coap(GET, '/1/0', mid=2, opts=[(O_ACCEPT, LINK)])],
        'write-text': [coap(PUT, '/1/0/1', opts=[(O_CF, TEXT)], payload='120')],
        'write-tlv': [coap(PUT, '/1/0', opts=[(O_CF, TLV)], payload=srv_tlv)],
        'write-tlv-1542': [coap(POST, '/1/0', opts=[(O_CF, 1542)], payload=srv_tlv)],
        'write-senml-json': [coap(POST, '/1/0', opts=[(O_CF, SENML_JSON)], payload=senml_json(SERVER))],
        'write-senml-cbor': [coap(PUT, '/1/0', opts=[(O_CF, SENML_CBOR)], payload=senml_cbor(SERVER))],
        'write-time': [coap(PUT, '/3/0/13', opts=[(O_CF, TEXT)], payload='1700000000')],
        'write-tz': [coap(PUT, '/3/0/15', opts=[(O_CF, TEXT)], payload='Europe/Berlin')],
        'write-readonly': [coap(PUT, '/3/0', opts=[(O_CF, TLV)], payload=dev_tlv)],
        'write-attributes': [coap(PUT, '/3/0/9', query=['pmin=10', 'pmax=60', 'gt=50', 'lt=10', 'st=5'])],
        'write-attributes-obj': [coap(PUT, '/1', query=['pmin=1', 'epmin=2', 'epmax=30', 'con=1', 'hqmax=4'])],
        'write-attributes-clear': [coap(PUT, '/3/0/9', query=['pmin', 'pmax'])],
        'execute-update': [coap(POST, '/1/0/8')],
        'execute-args': [coap(POST, '/3/0/4', payload="0='now',1")],
        'execute-disable': [coap(POST, '/1/0/4')],
        'observe': [coap(GET, '/3/0/13', opts=[(O_OBSERVE, 0)]),
                    coap(GET, '/3/0/13', mid=2, token=b'\x02', opts=[(O_OBSERVE, 1)])],
        'observe-object': [coap(GET, '/3', opts=[(O_OBSERVE, 0), (O_ACCEPT, SENML_JSON)])],
        'block2': [coap(GET, '/3', opts=[(O_BLOCK2, block(1, False, 0))]),
                   coap(GET, '/3', mid=2, opts=[(O_BLOCK2, block(2, False, 0))])],
        'create': [coap(POST, '/1', opts=[(O_CF, TLV)], payload=tlv_write(ns, 3, [(0, 9), (1, 60), (7, 'U')]))],
        'delete': [coap(DELETE, '/1/1'), coap(DELETE, '/', mid=2)],
        'read-composite': [coap(FETCH, '/', opts=[(O_CF, SENML_JSON), (O_ACCEPT, SENML_JSON)],
                                payload=b'[{"n":"/3/0/0"},{"n":"/1/0/1"},{"n":"/m1/3303/0/5700"}]')],
        'observe-composite': [coap(FETCH, '/', opts=[(O_OBSERVE, 0), (O_CF, SENML_CBOR)],
                                   payload=cbor([{0: '/3/0/9'}, {0: '/3/0/10'}]))],
        'write-composite': [coap(IPATCH, '/', opts=[(O_CF, SENML_JSON)],
                                 payload=b'[{"n":"/1/0/1","v":90},{"n":"/m1/3311/0/5850","vb":true}]')],
        'device-read': [coap(GET, '/m1/3303/0/5700'), coap(GET, '/25/0', mid=2)],
        'device-write': [coap(PUT, '/m1/3311/0/5850', opts=[(O_CF, TEXT)], payload='1')],
        'firmware-uri': [coap(PUT, '/5/0/1', opts=[(O_CF, TEXT)], payload='coap://127.0.0.1:5683/fw.bin'),
                         coap(POST, '/5/0/2', mid=2)],
        'software-create': [coap(POST, '/9', opts=[(O_CF, SENML_JSON)],
                                 payload=b'[{"bn":"/9/1/","n":"0","vs":"app"},{"n":"1","vs":"1.0"}]')],
        'unknown-critical-option': [coap(GET, '/3/0', opts=[(9, b'x')])],
    }
    payload = bytes(range(256)) * 2
    cases['firmware-push-block1'] = [
        coap(PUT, '/5/0/0', mid=10 + n, opts=[(O_CF, OPAQUE), (O_BLOCK1, block(n, n < 7, 2)), (O_SIZE1, len(payload))],
             payload=payload[n * 64:(n + 1) * 64]) for n in range(8)]
    body = senml_json(SERVER)
    cases['write-block1'] = [
        coap(PUT, '/1/0', mid=20 + n, opts=[(O_CF, SENML_JSON), (O_BLOCK1, block(n, (n + 1) * 16 < len(body), 0))],
             payload=body[n * 16:(n + 1) * 16]) for n in range((len(body) + 15) // 16)]
    return cases


def client_request(ns):
    for name, packets in client_requests(ns).items():
        data = b''
        for i, p in enumerate(packets):
            second = 0x8000 if name.endswith('composite') and i else 0
            data += struct.pack('>H', len(p) | second) + p
        seed('client_request', name, data)


def arbitrary(target, n, rng):
    """Starting points for targets that build their input with `arbitrary`."""
    for i in range(n):
        seed(target, f'random-{i}', bytes(rng.randrange(256) for _ in range(rng.choice((16, 64, 256, 1024)))))


def ddf():
    for f in sorted((ROOT / 'objects').glob('*.xml')) + sorted((ROOT / 'tests/fixtures/objects').glob('*.xml')):
        seed('ddf', f.name, f.read_bytes())


def smartcard(ns):
    odf = ns['tlv'](0xA7, ns['tlv'](0x30, ns['tlv'](0x04, b'\x64\x30')))
    files = {
        'odf': odf,
        'dodf-opaque': ns['dodf'](Card()),
        'dodf-oid': ns['dodf'](Card(dodf='oid')),
        'dodf-pin': ns['dodf'](Card(pin=True)),
        'boot': ns['bootstrap_file'](Card()),
        'boot-psk': ns['bootstrap_file'](Card(psk_key='000102030405060708090a0b0c0d0e0f', uri='coaps://h:5684')),
        'boot-big': ns['bootstrap_file'](Card(big=300)),
        'dir-record': ns['tlv'](0x61, ns['tlv'](0x4F, ns['PKCS15_AID']) + ns['tlv'](0x50, b'LwM2M PKCS15')
                                + ns['tlv'](0x51, b'\x3F\x00\x50\x15')),
        'fcp': bytes.fromhex('620782054221003001') + bytes.fromhex('6204800200ff'),
    }
    for name, b in files.items():
        seed('smartcard', name, b)
    framed = lambda *fs: b''.join(struct.pack('>H', len(f)) + f for f in fs)
    for dodf in ('dodf-opaque', 'dodf-oid', 'dodf-pin'):
        for boot in ('boot', 'boot-psk', 'boot-big'):
            base = framed(files['odf'], files[dodf], files[boot])
            seed('smartcard_walk', f'{dodf}-{boot}', base)
            seed('smartcard_walk', f'{dodf}-{boot}-t0', base + b'\xf1\x00' * 40)
    base = framed(files['odf'], files['dodf-pin'], files['boot'])
    seed('smartcard_walk', 'pin-demanded', base + b'\x00' * 14 + b'\xf5' + b'\x00' * 8)
    seed('smartcard_walk', 'wrong-le', base + b'\xf3\x20' + b'\x00' * 30)
    seed('smartcard_walk', 'end-of-file', base + b'\x00' * 16 + b'\xf4')
    seed('smartcard_walk', 't0-for-ever', base + b'\xf2')
    seed('smartcard_walk', 'removed', base + b'\x00' * 10 + b'\xf0')


def firmware():
    fx = ROOT / 'agent/tests/fixtures/minisign'
    digest = hashlib.sha256((fx / 'image.bin').read_bytes()).hexdigest()
    for f in ('test.pub', 'other.pub', 'image.bin.minisig', 'image.bin.legacy.minisig', 'SHA256SUMS'):
        seed('firmware', f, (fx / f).read_bytes())
    uris = ['coap://127.0.0.1:5683/fw/image.bin', 'coaps://[::1]:5684/a/b?x=1',
            f'https://repo.example/image.bin#sha256={digest}', f'http://h/image.bin?sha256={digest}&sig=1',
            'http://h/image.bin?sha256=00#sha256=11', 'ftp://h/fw', 'coap://h/%2e%2e/fw']
    manifests = [f'{digest}  image.bin\n', f'{digest} *image.bin\n', f'SHA256 (image.bin) = {digest}\n',
                 (fx / 'SHA256SUMS').read_text(), '# comment\n\n', f'{digest}\n']
    for i, u in enumerate(uris):
        for j, m in enumerate(manifests):
            seed('firmware', f'uri-{i}-manifest-{j}', f'{u}\n{m}')
    tok = b'\x01\x02'
    seed('firmware', 'block2-download', b'x\xfe' + b'\xfe'.join(
        coap(CONTENT, typ=ACK, token=tok, opts=[(O_BLOCK2, block(n, n < 3, 6)), (O_ETAG, b'\x07'), (O_SIZE2, 3000)],
             payload=b'\0' * (1024 if n < 3 else 10)) for n in range(4)))
    seed('firmware', 'block2-etag-change', b'x\xfe' + b'\xfe'.join(
        coap(CONTENT, typ=ACK, token=tok, opts=[(O_BLOCK2, block(n, True, 6)), (O_ETAG, bytes([n]))],
             payload=b'\0' * 1024) for n in range(3)))
    seed('firmware', 'not-found', b'x\xfe' + coap(NOT_FOUND, typ=ACK, token=tok))


def nmea(body):
    c = 0
    for ch in body.encode():
        c ^= ch
    return f'${body}*{c:02X}\r\n'


def bridge_payloads():
    payloads = {
        'json-temp': 's/meter1/data\n{"t": 215, "ts": 1700000000, "a": {"b": [true]}}',
        'json-rfc3339': 's/meter1/data\n{"t": -12.5, "ts": "2024-03-01T12:00:00.250+01:00"}',
        'json-nested': 's/x/data\n{"a": {"b": [1, 2]}, "t": "21.5"}',
        'json-bad-types': 's/x/data\n{"t": [1], "a": {"b": ["x"]}, "ts": -1}',
        'status': 's/meter1/status\nonline',
        'text-topic': 's/meter1/text\nhello',
        'not-json': 's/x/data\n{"t": ',
        'nmea': 'x\n' + nmea('GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,')
                + nmea('GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W')
                + nmea('GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,'),
        'nmea-bad-checksum': 'x\n$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*00\r\n',
        'instrument': 'x\nT=21.5\r\nT=-3.25\r\nT=abc\r\n',
        'overlong': 'x\n' + 'A' * 200 + '\r\nT=1\r\n',
        'sms-trigger': coap(POST, '/1/0/8', mid=0x3A7F, token=b'\xa1\xb2\xc3\xd4').decode('latin-1'),
    }
    for name, p in payloads.items():
        seed('bridge_payloads', name, p.encode('latin-1') if name == 'sms-trigger' else p)


def sms_pdu():
    v = json.loads((ROOT / 'bridges/tests/fixtures/modem/vectors.json').read_text())
    parts = []
    for name, case in v.items():
        for i, c in enumerate(case.get('parts', [case])):
            pdu = bytes.fromhex(c['pdu'])
            seed('sms_pdu', f'{name}-{i}-octets', pdu)
            seed('sms_pdu', f'{name}-{i}-hex', c['pdu'])
            tpdu = pdu[1 + pdu[0]:]  # without the SMSC address
            parts.append(tpdu)
            seed('sms_pdu', f'{name}-{i}-tpdu', tpdu)
    # Length-prefixed parts through the reassembler, in order and reversed.
    seed('sms_pdu', 'parts', b''.join(bytes([len(p)]) + p for p in parts if len(p) < 256))
    seed('sms_pdu', 'parts-reversed', b''.join(bytes([len(p)]) + p for p in reversed(parts) if len(p) < 256))
    hexpdu = v['single_8bit_post_1_0_8']['pdu']
    seed('sms_pdu', 'at-cmgl', f'\r\n+CMGL: 1,0,,{len(hexpdu) // 2 - 8}\r\n{hexpdu}\r\n\r\nOK\r\n')
    seed('sms_pdu', 'at-cmt', f'\r\n+CMT: ,{len(hexpdu) // 2 - 8}\r\n{hexpdu}\r\n\r\n+CMTI: "SM",3\r\n')
    for line in (ROOT / 'bridges/tests/fixtures/modem/canned.txt').read_text().splitlines():
        if line.startswith('AT') and ' ' in line:
            cmd, reply = line.split(' ', 1)
            seed('sms_pdu', f'canned-{cmd}', reply.encode().decode('unicode_escape'))


def config():
    base = (ROOT / 'etc/lwgate.toml').read_text()
    local = {'/etc/lwgate/psk.hex': 'psk.key', '/etc/lwgate/bs-psk.hex': 'psk.key',
             '/etc/lwgate/client.pem': 'cert.pem', '/etc/lwgate/client.key': 'key.pem',
             '/etc/lwgate/server.der': 'cert.der', '/etc/lwgate/server.pub': 'pub.pem',
             '/etc/lwgate/ca.pem': 'ca.pem', '/etc/lwgate/repo-ca.pem': 'ca.pem',
             '/etc/lwgate/firmware.pub': 'minisign.pub', '/etc/lwgate/software.pub': 'minisign.pub'}

    def localise(text):
        for a, b in local.items():
            text = text.replace(a, b)
        return text

    def uncomment(text, section):
        """The commented keys of one table of etc/lwgate.toml, switched on."""
        out, on = [], False
        for line in text.splitlines():
            m = re.match(r'#(\[.*\])\s*$', line)
            if m:
                on = m.group(1) == section
                out.append(m.group(1) if on else line)
                continue
            m = re.match(r'#([a-z_]+ = .*?)(\s+#.*)?$', line)
            out.append(m.group(1) if on and m else line)
        return '\n'.join(out) + '\n'

    devices = {}
    for f in sorted((ROOT / 'etc/devices.d').glob('*.toml.example')):
        devices[f.name[:-len('.example')]] = f.read_text()
    seed('config', 'packaged', base)
    seed('config', 'packaged-with-devices', base + ''.join(f'\n#>>> {n}\n{t}' for n, t in devices.items()))
    for n, t in devices.items():
        seed('config', f'device-{n}', base + f'\n#>>> {n}\n{t}')
        seed('config', f'device-{n}-twice', base + f'\n#>>> a-{n}\n{t}\n#>>> b-{n}\n{t}')
    for section in ('[bootstrap.smartcard]', '[bootstrap.server]', '[firmware]', '[software]'):
        seed('config', f'uncommented-{section}', localise(uncomment(base, section)))
    server = re.search(r'\[\[server\]\].*?(?=\n# Bootstrap)', base, re.S).group(0)
    for mode, keys in (('psk', 'psk_identity = "gw"\npsk_key_file = "psk.key"'),
                       ('psk', 'psk_identity = "gw"\npsk_key = "000102030405060708090a0b0c0d0e0f"'),
                       ('psk', 'psk_identity = "gw"\npsk_key_file = "open.key"'),
                       ('certificate', 'certificate = "cert.pem"\nprivate_key = "key.pem"\nserver_certificate = "cert.der"'),
                       ('certificate', 'certificate = "cert.der"\nprivate_key = "key.der"\nca_file = "ca.pem"\n'
                                       'certificate_usage = 1\nsni = "lwm2m.example.com"\n'
                                       'cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", 0xC0A8]'),
                       ('rpk', 'private_key = "key.pem"\nserver_public_key = "pub.der"\npublic_key = "pub.pem"')):
        s = server.replace('coap://127.0.0.1:5683', 'coaps://127.0.0.1:5684').replace('"nosec"', f'"{mode}"')
        seed('config', f'server-{mode}', base + '\n' + s.replace('ssid = 101', 'ssid = 102') + '\n' + keys + '\n')
    text = (ROOT / 'docs/CONFIG.md').read_text()
    for i, block in enumerate(re.findall(r'```toml\n(.*?)```', text, re.S)):
        block = localise(block)
        if '[device]' in block:
            seed('config', f'doc-{i}', base + f'\n#>>> doc-{i}.toml\n{block}')
        elif '[[server]]' in block:
            seed('config', f'doc-{i}', re.sub(r'\[\[server\]\].*?(?=\n# Bootstrap)', lambda _: block, base,
                                              flags=re.S))
        else:
            seed('config', f'doc-{i}', base + '\n' + block)


def modbus(rng):
    # Register values pymodbus encodes (bridges/tests/fixtures/modbus_vectors.json) as
    # the fuzz bytes the target reads registers from, after a few bytes of map.
    v = json.loads((ROOT / 'bridges/tests/fixtures/modbus_vectors.json').read_text())['vectors']
    for i in range(0, len(v), max(1, len(v) // 24)):
        regs = v[i]['registers']
        seed('modbus', f'{v[i]["type"]}-{i}', bytes(rng.randrange(256) for _ in range(24))
             + b''.join(struct.pack('<H', r) for r in regs) * 4)
    arbitrary('modbus', 8, rng)


def main():
    clear()
    rng = random.Random(15)  # issue 15: the same seeds every time
    ns = uicc()
    hexes, literals = rust_vectors()
    codecs(hexes, literals)
    coap_endpoint()
    client_request(ns)
    arbitrary('client_ops', 24, rng)
    arbitrary('bootstrap', 24, rng)
    ddf()
    smartcard(ns)
    firmware()
    bridge_payloads()
    sms_pdu()
    config()
    modbus(rng)
    for t, n in sorted(written.items()):
        print(f'{t:16} {n:4} seeds')


if __name__ == '__main__':
    main()
