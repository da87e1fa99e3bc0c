"""The report follows the schema: every family's totals are in its appendix, read from summary's
generic "counters" section, and a family added to the schema is reported with no report code."""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import pytest

from backend.data import schema
from backend.data.decode import decode
from backend.data.schema import Family, Members, Name
from backend.data.summary import summarize
from backend.data.trace import TraceWriter

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytestmark = pytest.mark.unit
DEV = (0, 7)


def _cells(text: str) -> dict[tuple, str]:
    """data-key -> the cell's text, for every value cell of the appendix."""
    part = text[text.index("Every counter"):]
    return {tuple(json.loads(html.unescape(k))): v
            for k, v in re.findall(r'data-key="([^"]+)" data-kind="int">([^<]*)<', part)}


def test_a_family_added_to_the_schema_is_reported(qapp, tmp_path: Path) -> None:
    from gui.report import write_report
    fam = Family("widgets", ("widgets", Name("device", raw="device"), Members(("filled", "lost"))),
                 "widgets a later xdpscope counts", sparse=schema.ENTRY)
    schema.add(fam)
    try:
        trace = tmp_path / "w.xst"
        with TraceWriter(trace, {"iface": "xs-in", "program": "redirect"}) as w:
            for i, n in enumerate((1200, 34, 5)):
                w.write(decode({("widgets", DEV, "lost"): n, ("verdicts", 0, 2): n}, {DEV: "xs-t7"}, 0.5 * (i + 1), 0.5))
        out = tmp_path / "r.html"
        write_report(trace, out)
        text = out.read_text()
        assert "<h2>widgets</h2>" in text and "widgets a later xdpscope counts" in text
        cells = _cells(text)
        assert cells[("counters", "widgets", "xs-t7", "lost")] == "1,239"
        assert summarize(trace)["counters"]["widgets"]["xs-t7"]["lost"] == 1239
    finally:
        schema.remove("widgets")


def test_every_appendix_cell_is_the_summary_value(qapp, tmp_path: Path) -> None:
    from gui.report import write_report
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "r.html"
    write_report(root / "resources" / "sample.xst", out)
    cells = _cells(out.read_text())
    s = summarize(root / "resources" / "sample.xst")
    assert len(cells) > 20
    for key, text in cells.items():
        v = s
        for k in key:
            v = v[k]
        assert text == f"{v:,}", key
    # every nonzero leaf of every family is there (the bundled trace has fewer than the row cap)
    fams = {schema.match(k[1:])[0].name for k in cells}
    assert {"verdicts", "targets", "flush", "devmap", "redirect_errors", "napi", "napi_hist", "run"} <= fams
