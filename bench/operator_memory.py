"""The operator under tracemalloc, for the operator benchmark's memory profile (`--memory-profile`).

    python bench/operator_memory.py OUT -- OPERATOR-ARGS...

runs `phlo-dagster-operator OPERATOR-ARGS` in this process with tracemalloc on; on SIGUSR2 it writes OUT
(JSON): the bytes Python has allocated and still holds, and where: per source file of the most recent
frame outside the standard library."""

from __future__ import annotations

import json
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 8  # enough to get past the standard library (json's decoder, copy) to the code that asked for it
STDLIB = str(Path(json.__file__).parent.parent)


def owner(frames: tracemalloc.Traceback) -> str:
    """The most recent frame outside the standard library: json.loads or copy.deepcopy allocate, but the
    watch stream or the store that called them holds the memory."""
    for frame in reversed(list(frames)):
        name = frame.filename
        if not name.startswith(STDLIB) or "site-packages" in name:
            return name
    return frames[-1].filename if len(frames) else "?"


def snapshot() -> dict[str, object]:
    held: dict[str, list[int]] = {}
    for stat in tracemalloc.take_snapshot().statistics("traceback"):
        entry = held.setdefault(owner(stat.traceback), [0, 0])
        entry[0] += stat.size
        entry[1] += stat.count
    current, peak = tracemalloc.get_traced_memory()
    files = [
        {"file": f, "bytes": b, "blocks": n} for f, (b, n) in sorted(held.items(), key=lambda kv: -kv[1][0])
    ]
    return {"traced": current, "peak": peak, "files": files}


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, args = Path(sys.argv[1]), sys.argv[3:]

    def dump(_signum: int, _frame: FrameType | None) -> None:
        out.write_text(json.dumps(snapshot()))

    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR2, dump)
    from phlo_operator.main import main as operator_main

    return operator_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
