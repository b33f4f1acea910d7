"""Where things are: the repository root, the test helpers reused from tests/
(the aiocoap LwM2M server, the pymodbus device), and the lwgate binary."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def lwgate_bin() -> Path:
    """LWGATE_BIN if set, else target/release/lwgate, else target/debug/lwgate: the
    figures mean most for the binary that ships."""
    env = os.environ.get("LWGATE_BIN")
    if env:
        return Path(env)
    for kind in ("release", "debug"):
        p = ROOT / "target" / kind / "lwgate"
        if p.exists():
            return p
    print("no lwgate binary: build one (`cargo build --release -p lwgate`) or set LWGATE_BIN", file=sys.stderr)
    raise SystemExit(2)
