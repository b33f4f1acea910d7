"""The power cut itself, replayed from an strace trace (trace.py's calls): at a
moment T the state database's files hold exactly the writes that an fsync or
fdatasync of the same file had made durable by T (every other write is lost, the
pessimistic model of a power cut: the page cache is gone). For each T just after
a datagram left for the server (the worst moments), the files are rebuilt that
way, opened with SQLite (which recovers the WAL as lwgate would at start), and
checked: the database is whole, every notification record sent and not yet
acknowledged is still queued, the last acknowledged Write and Write-Attributes
are there, and so is every observation whose first answer had left."""

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiocoap import Code, Message

from .ledger import senml_records
from .trace import SYNCS, _cbor_uint


@dataclass
class CutResult:
    points: int = 0
    whole: int = 0
    notes_checked: int = 0
    notes_missing: list = field(default_factory=list)  # (T, time, value)
    writes_checked: int = 0
    writes_missing: list = field(default_factory=list)
    attrs_checked: int = 0
    attrs_missing: list = field(default_factory=list)
    obs_checked: int = 0
    obs_missing: list = field(default_factory=list)
    broken: list = field(default_factory=list)


class Files:
    """The durable content of each file of the database as T moves forward."""

    def __init__(self, calls, stem):
        self.ops = [c for c in calls if c.target.startswith(stem) and (c.name.startswith("pwrite") or c.name == "ftruncate") and c.ret is not None and c.ret >= 0]
        self.syncs = [c for c in calls if c.target.startswith(stem) and c.name in SYNCS and c.ret == 0]
        self.content: dict[str, bytearray] = {}
        self.cut_by: dict[str, float] = {}

    def advance(self, t):
        for s in self.syncs:
            if s.end <= t:
                self.cut_by[s.target] = max(self.cut_by.get(s.target, 0.0), s.start)
        keep = []
        for op in self.ops:
            # Durable: written before a sync of its file that ended by t (a prefix per file).
            if op.end <= self.cut_by.get(op.target, -1.0):
                self._apply(op)
            else:
                keep.append(op)
        self.ops = keep

    def _apply(self, op):
        buf = self.content.setdefault(op.target, bytearray())
        if op.name == "ftruncate":
            return  # the length is not in the parsed call; SQLite only truncates a WAL it resets
        end = op.offset + len(op.data)
        if len(buf) < end:
            buf.extend(bytes(end - len(buf)))
        buf[op.offset : end] = op.data

    def write_to(self, d: Path, db_name: str):
        for target, buf in self.content.items():
            name = Path(target).name
            if name.startswith(db_name) and not name.endswith("-journal"):
                (d / name).write_bytes(bytes(buf))


def replay(calls, work: Path, server_port: int, stem=None) -> CutResult:
    work.mkdir(parents=True, exist_ok=True)
    db_target = next(c.target for c in calls if c.target.endswith("state.db") and c.name.startswith("pwrite"))
    files = Files(calls, db_target)
    db_name = Path(db_target).name
    sock = [c for c in calls if f":{server_port}]" in c.target and c.data and c.ret and c.ret > 0]
    sent_notes = []  # (t, mid, [(time, v)])
    acked: dict[int, float] = {}  # lwgate's MID -> when the server's ACK was read
    requests = {}
    writes, attrs, observes = [], [], []  # (answer time, needle)
    for c in sock:
        try:
            m = Message.decode(c.data)
        except Exception:  # noqa: BLE001
            continue
        if c.name.startswith("recv"):
            if m.code.is_request():
                requests[m.mid] = m
            elif m.mtype.name == "ACK":
                acked.setdefault(m.mid, c.end)
            continue
        if m.code == Code.CONTENT and m.opt.observe:
            sent_notes.append((c.start, m.mid, senml_records(m.payload)))
        elif m.code.is_successful() and m.mid in requests:
            req = requests[m.mid]
            if req.code == Code.GET and req.opt.observe == 0 and m.opt.observe is not None:
                observes.append((c.start, bytes(req.token)))
            elif req.code == Code.PUT and req.opt.uri_query and not req.payload:
                q = dict(x.partition("=")[::2] for x in req.opt.uri_query)
                if q.get("pmax", "").isdigit():
                    attrs.append((c.start, int(q["pmax"])))
            elif req.code == Code.PUT and req.payload and list(req.opt.uri_path) == ["1", "0", "3"]:
                writes.append((c.start, int(req.payload)))
    # A record is delivered once any message carrying it was acknowledged (a
    # notification cut off by an outage goes again in a replayed pack).
    delivered: dict[float, float] = {}
    for at, mid, recs in sent_notes:
        if mid in acked:
            for rt, _ in recs:
                delivered[rt] = min(delivered.get(rt, float("inf")), acked[mid])
    res = CutResult()
    points = sorted({c.end + 1e-6 for c in sock if c.name.startswith("send")})
    for t in points:
        files.advance(t)
        res.points += 1
        with tempfile.TemporaryDirectory(dir=work) as d:
            d = Path(d)
            files.write_to(d, db_name)
            if not (d / db_name).exists():
                continue
            try:
                con = sqlite3.connect(d / db_name)
                ok = con.execute("PRAGMA integrity_check").fetchone()[0]
                if ok != "ok":
                    res.broken.append((t, ok))
                    continue
                res.whole += 1
                queued = [r[0] for r in con.execute("SELECT time FROM queue")] if _has(con, "queue") else []
                inst = con.execute("SELECT value FROM instance WHERE obj = 1 AND inst = 0").fetchone() if _has(con, "instance") else None
                attr_rows = [r[0] for r in con.execute("SELECT value FROM attribute")] if _has(con, "attribute") else []
                tokens = {bytes(r[0]) for r in con.execute("SELECT token FROM observation")} if _has(con, "observation") else set()
                con.close()
            except sqlite3.DatabaseError as e:
                res.broken.append((t, str(e)))
                continue
        for at, mid, recs in sent_notes:
            if at >= t:
                continue
            for rt, v in recs:
                if delivered.get(rt, float("inf")) < t:
                    continue
                res.notes_checked += 1
                if not any(abs(q - rt) < 0.002 for q in queued):
                    res.notes_missing.append((t, rt, v))
        done = [w for w in writes if w[0] < t]
        if done:
            res.writes_checked += 1
            allowed = [v for at, v in writes if at >= done[-1][0]]  # the last acknowledged, or a later one
            blob = bytes(inst[0]) if inst and inst[0] is not None else b""
            if not any(_cbor_uint(v) in blob for v in allowed):
                res.writes_missing.append((t, done[-1][1]))
        done = [a for a in attrs if a[0] < t]
        if done:
            res.attrs_checked += 1
            allowed = [v for at, v in attrs if at >= done[-1][0]]
            if not any(f'"pmax":{v}' in row for row in attr_rows for v in allowed):
                res.attrs_missing.append((t, done[-1][1]))
        for at, tok in observes:
            if at < t:
                res.obs_checked += 1
                if tok not in tokens:
                    res.obs_missing.append((t, tok.hex(), t - at))
    return res


def _has(con, table):
    return con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


def report(r: CutResult):
    rows = [
        ("power cuts replayed (just after each datagram to the server)", r.points),
        ("  database whole after recovery", f"{r.whole} / {r.points}"),
        ("  sent, unacknowledged records: missing / checked", f"{len(r.notes_missing)} / {r.notes_checked}"),
        ("  last acknowledged Write /1/0/3: missing / checked", f"{len(r.writes_missing)} / {r.writes_checked}"),
        ("  last acknowledged Write-Attributes: missing / checked", f"{len(r.attrs_missing)} / {r.attrs_checked}"),
        ("  answered observations: missing / checked", f"{len(r.obs_missing)} / {r.obs_checked}"),
    ]
    w = max(len(k) for k, _ in rows)
    out = "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)
    for t, tok, after in r.obs_missing:
        out += f"\n  observation {tok} gone after a cut {after * 1e6:.0f} us after its 2.05 left"
    return out


def problems(r: CutResult):
    out = []
    if r.broken:
        out.append(f"{len(r.broken)} cut(s) left a database SQLite cannot use: {r.broken[:3]}")
    if r.notes_missing:
        out.append(f"{len(r.notes_missing)} sent, unacknowledged record(s) gone after a cut: {r.notes_missing[:3]}")
    if r.writes_missing:
        out.append(f"an acknowledged Write gone after {len(r.writes_missing)} cut(s): {r.writes_missing[:3]}")
    if r.attrs_missing:
        out.append(f"acknowledged Write-Attributes gone after {len(r.attrs_missing)} cut(s): {r.attrs_missing[:3]}")
    if r.obs_missing:
        out.append(f"an answered observation gone after {len(r.obs_missing)} cut(s) (the deferred observation commit)")
    return out
