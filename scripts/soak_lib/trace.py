"""The power-cut check, pure (no I/O): an `strace -f -ttt -T -yy -xx` trace of
lwgate parsed into system calls, and a proof from it that nothing acknowledged
to a server or accepted from it waits in the page cache when the datagram that
says so leaves:

- every notification datagram (2.05 with Observe) leaves after the WAL commit
  that holds each of its records (the queue row with the record's time, an
  8-byte REAL in the page written to state.db-wal) was fsync'ed: a stored or
  written-ahead notification is on disk before it can be acknowledged;
- every answer to a server's request that changes state (a Write, a
  Write-Attributes, an Observe) leaves after a WAL commit, made after the
  request arrived, that holds what was accepted (the written value as SenML CBOR,
  the attribute's number, the observation's token), was fsync'ed.

SQLite writes a WAL frame as two pwrite64 calls (the 24-byte frame header, whose
second word is non-zero on a commit frame, then the page) and syncs the WAL with
fsync (fdatasync when built so); both are accepted as the sync."""

import re
import struct
from dataclasses import dataclass, field

from aiocoap import Code, Message

from .ledger import senml_records

LINE = re.compile(r"^(\d+) +(\d+\.\d+) (?:(\w+)\((.*)|<\.\.\. (\w+) resumed>(.*))$")
RESULT = re.compile(r"\) += (-?\d+|\?)(?: [A-Z]+ \(.*\))? <(\d+\.\d+)>$")
FD = re.compile(r"^(\d+)<(.*?)>(?=\s*[,)])")
STR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
SYNCS = ("fsync", "fdatasync")


def unhex(s: str) -> bytes:
    return bytes.fromhex(s.replace("\\x", ""))


@dataclass
class Call:
    pid: int
    start: float
    end: float
    name: str
    fd: int | None
    target: str  # the fd's path or socket description
    data: bytes  # the buffer written, sent or received
    ret: int | None
    offset: int | None = None


def parse(lines):
    """System calls from strace output lines (unfinished/resumed pairs joined)."""
    calls = []
    pending: dict[int, tuple[float, str, str]] = {}
    for line in lines:
        line = line.rstrip("\n")
        m = LINE.match(line)
        if not m:
            continue
        pid, t = int(m.group(1)), float(m.group(2))
        if m.group(3):
            name, rest = m.group(3), m.group(4)
            if rest.endswith("<unfinished ...>"):
                pending[pid] = (t, name, rest[: -len("<unfinished ...>")])
                continue
            start, body = t, rest
        else:
            name = m.group(5)
            if pid not in pending:
                continue
            start, pname, head = pending.pop(pid)
            if pname != name:
                continue
            body = head + m.group(6)
        r = RESULT.search(body) or RESULT.search(")" + body)
        if not r:
            continue
        ret = None if r.group(1) == "?" else int(r.group(1))
        end = start + float(r.group(2))
        fd, target = None, ""
        f = FD.match(body)
        if f:
            fd, target = int(f.group(1)), f.group(2)
            if "\\x" in target:
                try:
                    target = unhex(target).decode(errors="replace")
                except ValueError:
                    pass
        data = b""
        s = STR.search(body)
        if s:
            data = unhex(s.group(1))
        offset = None
        if name.startswith("pwrite"):
            o = re.search(r", (\d+)\) += ", body)
            offset = int(o.group(1)) if o else None
        calls.append(Call(pid, start, end, name, fd, target, data, ret, offset))
    calls.sort(key=lambda c: c.start)
    return calls


@dataclass
class Violation:
    what: str
    at: float
    detail: str


@dataclass
class Check:
    notifications: int = 0
    records: int = 0
    replayed_packs: int = 0
    stored: int = 0  # records sent more than 1.5 s after their time: stored, then replayed
    writes: int = 0
    attributes: int = 0
    observes: int = 0
    wal_commits: int = 0
    sync_name: set = field(default_factory=set)
    margins: list = field(default_factory=list)  # sync end -> datagram, s
    violations: list = field(default_factory=list)

    def ok(self):
        return not self.violations


class Wal:
    """The WAL's writes and syncs in time order, with the doubles each page holds."""

    def __init__(self, calls):
        self.writes = [c for c in calls if c.name.startswith("pwrite") and c.target.endswith("-wal") and c.ret and c.ret > 0]
        self.syncs = [c for c in calls if c.name in SYNCS and c.target.endswith("-wal") and c.ret == 0]
        self._doubles = None

    def doubles(self):
        """{round(x, 3): [index of the page write]} for every plausible epoch time."""
        if self._doubles is None:
            self._doubles = {}
            for i, w in enumerate(self.writes):
                if len(w.data) < 512:
                    continue
                for off in range(len(w.data) - 7):
                    (x,) = struct.unpack_from(">d", w.data, off)
                    if 1.0e9 < x < 4.0e9:
                        self._doubles.setdefault(round(x, 3), []).append(i)
        return self._doubles

    def durable_before(self, i, before):
        """The sync that made page write `i` durable, if it ended before `before`:
        the commit frame of its transaction (its own frame, or a later one whose
        24-byte header has a non-zero commit word) fully written, then a sync of
        the WAL. A frame is its header, then its page at the header's offset + 24."""
        committed = None
        for j in range(max(0, i - 1), len(self.writes) - 1):
            h, page = self.writes[j], self.writes[j + 1]
            if h.start > before:
                break
            if len(h.data) != 24 or page.offset != (h.offset or 0) + 24 or j + 1 < i:
                continue
            if struct.unpack_from(">I", h.data, 4)[0] != 0:
                committed = page
                break
        if committed is None:
            return None
        for s in self.syncs:
            if s.start >= committed.end and s.end <= before:
                return s
            if s.start > before:
                break
        return None

    def holding(self, needle: bytes, after: float, before: float):
        return [i for i, w in enumerate(self.writes) if after <= w.start <= before and needle in w.data]


def check(calls, server_port: int) -> Check:
    out = Check()
    wal = Wal(calls)
    out.sync_name = {s.name for s in wal.syncs}
    out.wal_commits = len([w for w in wal.writes if len(w.data) == 24 and struct.unpack_from(">I", w.data, 4)[0]])
    sock = [c for c in calls if f":{server_port}]" in c.target and c.name in ("sendto", "sendmsg", "recvfrom", "recvmsg")]
    requests: dict[int, tuple[float, Message]] = {}
    for c in sock:
        if not c.data or c.ret is None or c.ret <= 0:
            continue
        try:
            m = Message.decode(c.data)
        except Exception:  # noqa: BLE001 - not CoAP: nothing to prove
            continue
        if c.name.startswith("recv"):
            if m.code.is_request():
                requests[m.mid] = (c.end, m)
            continue
        if m.code == Code.CONTENT and m.opt.observe:
            _notification(out, wal, c, m)
        elif m.code.is_successful() and m.mtype.name in ("ACK", "NON", "CON") and m.mid in requests:
            _answer(out, wal, c, m, *requests[m.mid])
    return out


def _notification(out, wal, c, m):
    recs = senml_records(m.payload)
    out.notifications += 1
    out.records += len(recs)
    if len(recs) > 1:
        out.replayed_packs += 1
    doubles = wal.doubles()
    out.stored += len([t for t, _ in recs if c.start - t > 1.5])
    for t, v in recs:
        where = [i for k in (round(t - 0.001, 3), t, round(t + 0.001, 3)) for i in doubles.get(k, []) if wal.writes[i].start < c.start]
        if not where:
            out.violations.append(Violation("notification sent, its record never written to the WAL before", c.start, f"time {t}, value {v}, MID {m.mid}"))
            continue
        sync = None
        for i in sorted(set(where)):
            sync = wal.durable_before(i, c.start)
            if sync:
                break
        if sync is None:
            out.violations.append(Violation("notification sent before its WAL commit was synced", c.start, f"time {t}, value {v}, MID {m.mid}"))
        else:
            out.margins.append(c.start - sync.end)


def _answer(out, wal, c, m, received, req):
    path = "/".join(req.opt.uri_path)
    needle, kind = None, None
    if req.code == Code.GET and req.opt.observe == 0 and m.opt.observe is not None:
        needle, kind = bytes(req.token), "observe"
    elif req.code == Code.PUT and req.opt.uri_query and not req.payload:
        for q in req.opt.uri_query:
            k, _, v = q.partition("=")
            if k in ("pmax", "pmin", "epmin", "epmax") and v.isdigit():
                # As the attribute row holds it (serde_json of the attributes).
                needle, kind = f'"{k}":{v}'.encode(), "attributes"
    elif req.code in (Code.PUT, Code.POST) and req.payload and req.opt.content_format == 0 and path.startswith("1/"):
        try:
            needle, kind = _cbor_uint(int(req.payload)), "write"
        except ValueError:
            pass
    if needle is None:
        return
    setattr(out, {"observe": "observes", "attributes": "attributes", "write": "writes"}[kind],
            getattr(out, {"observe": "observes", "attributes": "attributes", "write": "writes"}[kind]) + 1)
    where = wal.holding(needle, received, c.start)
    sync = next((s for s in (wal.durable_before(i, c.start) for i in where) if s), None)
    if sync is None:
        out.violations.append(Violation(
            f"{kind} of /{path} answered {m.code} before what it accepted was on disk", c.start,
            f"MID {req.mid} token {bytes(req.token).hex()}: {'not in any WAL write before the answer' if not where else 'written, not synced before the answer'}",
        ))
    else:
        out.margins.append(c.start - sync.end)


def _cbor_uint(n: int) -> bytes:
    if n < 24:
        return bytes([n])
    if n < 256:
        return bytes([0x18, n])
    if n < 65536:
        return b"\x19" + n.to_bytes(2, "big")
    return b"\x1a" + n.to_bytes(4, "big")
