#!/usr/bin/env python3
"""Modbus value vectors from pymodbus, an independent implementation, for
bridges/tests/pymodbus_vectors.rs to check lwgate's codec against.

Made with pymodbus 3.9.2 (the version ThingsBoard IoT Gateway pins). To regenerate:

    python3 -m venv .venv && .venv/bin/pip install pymodbus==3.9.2
    .venv/bin/python bridges/tests/gen_modbus_vectors.py > bridges/tests/fixtures/modbus_vectors.json

The output is deterministic (fixed random seed), so a regenerated file should not
differ; the script refuses to run under another pymodbus version.

Where the registers come from:
- Numbers: pymodbus 3.9.2 has two conversions, and every vector goes through both.
  `ModbusClientMixin.convert_to_registers` / `convert_from_registers` (the current
  API) know word order only. The deprecated `BinaryPayloadBuilder` /
  `BinaryPayloadDecoder` also know byte order inside a register, so they produce the
  registers; the script asserts they agree with `convert_to_registers` for byte
  order big, and with `convert_to_registers` plus a byte swap of every register for
  byte order little, and that both decoders give the value back.
- Strings: pymodbus has no byte order for strings (`add_string` ignores it), so the
  byte-order-little vectors swap the bytes of each register of
  `convert_to_registers` output, done here. pymodbus pads only to a whole register;
  lwgate's strings span a fixed number of registers, so NUL registers are appended
  (`convert_from_registers` must still give the text back, as it trims trailing
  NULs). Only word order big: under "little" pymodbus reverses a string's
  registers, lwgate by design does not apply word order to strings.
- Bits of a register: `convert_from_registers(..., BITS)` lists the high byte's
  bits first (least significant first within each byte), so its index j is bit
  j ^ 8 of the register value, bit 0 being the least significant. The byte-order-
  little vectors swap the register's bytes, done here. `mask` is
  `convert_to_registers` of a list with only that bit set (swapped likewise).
"""

import json
import logging
import math
import random
import struct
import sys
import warnings

import pymodbus
from pymodbus.client.mixin import ModbusClientMixin as M
from pymodbus.constants import Endian
from pymodbus.payload import BinaryPayloadBuilder, BinaryPayloadDecoder

PYMODBUS = "3.9.2"
DT = M.DATATYPE
ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
ENDIAN = {"big": Endian.BIG, "little": Endian.LITTLE}

# (lwgate name, pymodbus datatype, BinaryPayload* method suffix, bits, signed)
INTEGERS = [
    ("u16", DT.UINT16, "16bit_uint", 16, False),
    ("i16", DT.INT16, "16bit_int", 16, True),
    ("u32", DT.UINT32, "32bit_uint", 32, False),
    ("i32", DT.INT32, "32bit_int", 32, True),
    ("u64", DT.UINT64, "64bit_uint", 64, False),
    ("i64", DT.INT64, "64bit_int", 64, True),
]
FLOATS = [("f32", DT.FLOAT32, "32bit_float"), ("f64", DT.FLOAT64, "64bit_float")]
F32_EDGES = [0.0, -0.0, 1.0, -1.0, 123.456, -2.5, math.pi, 3.4028234663852886e38,
             -3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45,
             65535.0, 16777216.0, 0.1]
F64_EDGES = [0.0, -0.0, 1.0, -1.0, 123.456, -2.5, math.pi, 1.7976931348623157e308,
             -1.7976931348623157e308, 2.2250738585072014e-308, 5e-324,
             9007199254740993.0, -1e100, 0.1]
STRINGS = ["", "A", "AB", "ABC", "lwgate-01", "Hello, Modbus!", "SN 0042 rev B",
           "é", "Grüße", "温度"]
BIT_REGISTERS = [0x0000, 0xFFFF, 0x8001, 0x1234, 0xA55A]


def swap(regs):
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


def integer_values(bits, signed, rng):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    edges = {lo, hi, 0, 1, lo + 1, hi - 1, 0x1234 & hi, (hi + 1) // 2 if not signed else -1}
    if bits > 16:
        edges |= {65535, 65536, -65536 if signed else 0x12345678}
    if bits > 32:
        edges |= {(1 << 32) - 1, 1 << 32, 0x0102030405060708, -(1 << 53) - 1 if signed else 1 << 53}
    return sorted(edges) + [rng.randint(lo, hi) for _ in range(6)]


def float_values(name, edges, rng):
    fmt = ">f" if name == "f32" else ">d"
    values = edges + [rng.uniform(-1e6, 1e6) for _ in range(4)] + [
        rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(4)
    ]
    # The value as the type holds it: pymodbus reads back the f32 nearest the input.
    return [struct.unpack(fmt, struct.pack(fmt, v))[0] for v in values]


def number_vector(name, dt, method, value, byte, word):
    builder = BinaryPayloadBuilder(byteorder=ENDIAN[byte], wordorder=ENDIAN[word])
    getattr(builder, "add_" + method)(value)
    regs = builder.to_registers()
    plain = M.convert_to_registers(value, dt, word_order=word)
    assert regs == (plain if byte == "big" else swap(plain)), (name, value, byte, word)
    decoder = BinaryPayloadDecoder.fromRegisters(list(regs), byteorder=ENDIAN[byte],
                                                 wordorder=ENDIAN[word])
    back = getattr(decoder, "decode_" + method)()
    unswapped = regs if byte == "big" else swap(regs)
    back2 = M.convert_from_registers(list(unswapped), dt, word_order=word)
    for b in (back, back2):
        assert b == value and math.copysign(1, b) == math.copysign(1, value), (name, value, b)
    return {"type": name, "byte_order": byte, "word_order": word, "value": value,
            "registers": regs}


def string_vector(text, length, byte):
    regs = M.convert_to_registers(text, DT.STRING, word_order="big")
    regs = regs + [0] * (length - len(regs))
    assert M.convert_from_registers(list(regs), DT.STRING, word_order="big") == text
    if byte == "little":
        regs = swap(regs)
    return {"type": "string", "length": length, "byte_order": byte, "word_order": "big",
            "value": text, "registers": regs}


def bit_vectors(register, byte):
    bits = M.convert_from_registers([register], DT.BITS)
    out = []
    for n in range(16):
        only = [False] * 16
        only[n ^ 8] = True
        mask = M.convert_to_registers(only, DT.BITS)[0]
        assert mask == 1 << n
        regs, mask = ([register], mask) if byte == "big" else (swap([register]), swap([mask])[0])
        out.append({"type": "bool", "bit": n, "byte_order": byte, "word_order": "big",
                    "value": bits[n ^ 8], "registers": regs, "mask": mask})
    return out


def main():
    if pymodbus.__version__ != PYMODBUS:
        sys.exit(f"made with pymodbus {PYMODBUS}, this is {pymodbus.__version__}")
    # BinaryPayload* log a deprecation warning on each use.
    warnings.simplefilter("ignore")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)

    rng = random.Random(20250)
    vectors = []
    for name, dt, method, bits, signed in INTEGERS:
        for value in integer_values(bits, signed, rng):
            for byte, word in ORDERS:
                vectors.append(number_vector(name, dt, method, value, byte, word))
    for (name, dt, method), edges in zip(FLOATS, [F32_EDGES, F64_EDGES]):
        for value in float_values(name, edges, rng):
            for byte, word in ORDERS:
                vectors.append(number_vector(name, dt, method, value, byte, word))
    for text in STRINGS:
        need = (len(text.encode()) + 1) // 2
        for length in sorted({max(need, 1), need + 2}):
            for byte in ("big", "little"):
                vectors.append(string_vector(text, length, byte))
    for register in BIT_REGISTERS:
        for byte in ("big", "little"):
            vectors.extend(bit_vectors(register, byte))

    # The strings hold non-ASCII text: UTF-8 whatever the locale says.
    sys.stdout.reconfigure(encoding="utf-8")
    lines = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in vectors)
    print("{")
    print('  "generator": "bridges/tests/gen_modbus_vectors.py",')
    print(f'  "pymodbus": "{pymodbus.__version__}",')
    print(f'  "vectors": [\n{lines}\n  ]')
    print("}")


if __name__ == "__main__":
    main()
