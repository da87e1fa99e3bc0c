#!/usr/bin/env python3
"""Rewrite a trace in the current format_version (docs/trace-format.md), sample for sample.

    .venv/bin/python scripts/convert-trace.py OLD.xst NEW.xst

The samples and meta are kept as recorded; meta gains "converted" (the source's format_version
and its clean-close time, since `ended` and `samples` are set again by the new file's close).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.errors import XdpscopeError  # noqa: E402
from backend.data.trace import TraceReader, TraceWriter  # noqa: E402


def convert(src: Path, dst: Path) -> int:
    if src.resolve() == dst.resolve():
        raise XdpscopeError(f"{dst}: write the converted trace to another file")
    with TraceReader(src) as r:
        meta = {k: v for k, v in r.meta.items() if k not in ("format_version", "samples", "ended")}
        meta["converted"] = {"from_format_version": r.version, "ended": r.meta.get("ended"), "at": time.time()}
        with TraceWriter(dst, meta) as w:
            for s in r.samples():
                w.write(s)
        return len(r)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        n = convert(Path(argv[0]), Path(argv[1]))
    except XdpscopeError as e:
        print(f"convert-trace: {e}", file=sys.stderr)
        return 1
    print(f"{argv[1]}: {n} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
