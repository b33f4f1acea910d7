"""The end-to-end ledger of a soak run, pure (no I/O): what the device generated
while lwgate ran, against what reached the server on the wire.

Definitions (HARDENING.md says why):
- a *reading*: the first time one lwgate run read a counter value from the device
  (the device records every read it answers);
- *expected*: a value that some run read at least `grace` seconds before that run
  was killed, or in a run that ended cleanly. A value read in the last `grace`
  seconds before a kill -9 may still have been in lwgate's memory only (read, not
  yet committed): those are counted apart ("at risk"), arrived or not;
- *arrived*: a SenML record of the observation that crossed the relay to the
  server; a CoAP retransmission (same message ID, same bytes) is one arrival;
- *lost*: an expected value of which no record arrived;
- *duplicate*: a record (same time, same value) that arrived again in another
  message: a stored notification sent twice;
- *re-reading*: the same value with another time: a restarted lwgate read the
  value again before the device stepped on (a new reading, not a duplicate);
- *out of order*: a record, first arrived, older than one that arrived before it;
- *time wrong*: a record whose time is not within `tol` of a reading of its value.
"""

import bisect
import json
from dataclasses import dataclass, field

from aiocoap import Code, Message

EXCHANGE_LIFETIME = 247.0


def notifications(datagrams, token: bytes | None = None):
    """(time, mid, observe, records) of each distinct notification message among
    (time, bytes) datagrams (retransmissions folded), records as (t, v)."""
    out = []
    seen = {}
    for at, data in datagrams:
        try:
            m = Message.decode(data)
        except Exception:  # noqa: BLE001 - not a CoAP message: not ours to count
            continue
        # Observe 0: the response that started the observation (a value without time).
        if m.code != Code.CONTENT or not m.opt.observe:
            continue
        if token is not None and m.token != token:
            continue
        key = (m.mid, bytes(data))
        if key in seen and at - seen[key] < EXCHANGE_LIFETIME:
            continue
        seen[key] = at
        out.append((at, m.mid, m.opt.observe, senml_records(m.payload)))
    return out


def senml_records(payload: bytes):
    """(time, value) of each SenML JSON record (bt + t; value v)."""
    try:
        recs = json.loads(payload)
    except ValueError:
        return []
    out = []
    bt = 0.0
    for r in recs if isinstance(recs, list) else []:
        bt = r.get("bt", bt)
        if isinstance(r.get("v"), (int, float)):
            out.append((round(bt + r.get("t", 0.0), 3), float(r["v"])))
    return out


@dataclass
class Reading:
    run: int
    value: int
    at: float
    expected: bool


@dataclass
class Ledger:
    messages: int = 0
    records: int = 0
    readings: list = field(default_factory=list)
    expected: int = 0
    at_risk: int = 0
    at_risk_arrived: int = 0
    arrived_values: int = 0
    lost: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)  # (time, value, copies)
    rereadings: int = 0
    out_of_order: list = field(default_factory=list)
    time_wrong: list = field(default_factory=list)
    observe_not_newer: int = 0
    unread_expected: int = 0

    def table(self):
        rows = [
            ("notification messages (retransmissions folded)", self.messages),
            ("records in them", self.records),
            ("values expected (read >= grace before a kill, or in a clean run)", self.expected),
            ("values arrived", self.arrived_values),
            ("LOST", len(self.lost)),
            ("duplicates (same time and value again)", sum(c - 1 for _, _, c in self.duplicates)),
            ("out of order", len(self.out_of_order)),
            ("timestamps wrong", len(self.time_wrong)),
            ("re-readings after a restart (new time, not duplicates)", self.rereadings),
            ("read < grace before a kill: arrived / all", f"{self.at_risk_arrived} / {self.at_risk}"),
            ("observe number not newer than the previous message", self.observe_not_newer),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)

    @property
    def duplicate_count(self):
        return sum(c - 1 for _, _, c in self.duplicates)


def build(lives, reads, datagrams, token=None, grace=0.5, tol=0.3, after=None):
    """`lives`: (started, ended, how) per lwgate run in order; `reads`: (time,
    value) of every read the device answered; `datagrams`: (time, bytes) that
    reached the server; `after`: only values above it count (the value the
    observation started with came in its first response, without a time)."""
    led = Ledger()
    starts = [l[0] for l in lives]
    first: dict[tuple[int, int], float] = {}
    for at, v in sorted(reads):
        run = bisect.bisect_right(starts, at) - 1
        if run < 0 or (after is not None and v <= after):
            continue
        first.setdefault((run, v), at)
    for (run, v), at in sorted(first.items(), key=lambda kv: kv[1]):
        _, ended, how = lives[run]
        clean = how != "kill -9"
        expected = clean or ended is None or at <= ended - grace
        led.readings.append(Reading(run, v, at, expected))
    by_value: dict[int, list[float]] = {}
    for r in led.readings:
        by_value.setdefault(r.value, []).append(r.at)

    notes = notifications(datagrams, token)
    led.messages = len(notes)
    arrivals: dict[tuple[float, float], int] = {}
    order = []
    last_obs = None
    for _, _, obs, recs in notes:
        if last_obs is not None and not _newer(obs, last_obs):
            led.observe_not_newer += 1
        last_obs = obs
        for t, v in recs:
            led.records += 1
            k = (t, v)
            arrivals[k] = arrivals.get(k, 0) + 1
            if arrivals[k] == 1:
                order.append(k)
    led.duplicates = [(t, v, c) for (t, v), c in arrivals.items() if c > 1]
    newest = float("-inf")
    for t, v in order:
        if t < newest - 0.001:
            led.out_of_order.append((t, v))
        newest = max(newest, t)
    arrived_by_value: dict[float, list[float]] = {}
    for t, v in order:
        arrived_by_value.setdefault(v, []).append(t)
        reads_of_v = by_value.get(int(v), []) if v.is_integer() else []
        if not any(abs(t - at) <= tol for at in reads_of_v):
            led.time_wrong.append((t, v))
    for v, ts in arrived_by_value.items():
        led.rereadings += len(ts) - 1
    expected_values = {r.value for r in led.readings if r.expected}
    risky = {r.value for r in led.readings if not r.expected} - expected_values
    led.expected = len(expected_values)
    led.arrived_values = len([v for v in expected_values if float(v) in arrived_by_value])
    led.lost = sorted(v for v in expected_values if float(v) not in arrived_by_value)
    led.at_risk = len(risky)
    led.at_risk_arrived = len([v for v in risky if float(v) in arrived_by_value])
    return led


def _newer(v2, v1):
    """RFC 7641 3.4 (without the 128 s clause): whether V2 is fresher than V1."""
    return (v1 < v2 and v2 - v1 < 1 << 23) or (v1 > v2 and v1 - v2 > 1 << 23)
