"""Reports and exports: every number in a report's tables is `summary --json`'s for the same trace
and window (compared through the visible cell text), the images have the requested pixels and
are not blank, every PDF page renders with pdftoppm, exports of one plot have exact sizes and an
SVG whose data x values are seconds since the session start. Runs offscreen, no display."""
from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from tests.conftest import ROOT, run_cli

SAMPLE = ROOT / "resources" / "sample.xst"
MARGIN = 24  # gui.report.PNG_MARGIN


# -- reading a report back --------------------------------------------------------------------

class Cells(HTMLParser):
    """Collects the value cells (data-key, data-kind, visible text) and the <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[list, str, str]] = []
        self.images: list[dict] = []
        self.headings: list[str] = []
        self._cell: dict | None = None
        self._h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-key" in a:
            self._cell = {"key": json.loads(a["data-key"]), "kind": a["data-kind"], "text": ""}
        elif tag == "img":
            self.images.append(a)
        elif tag == "h2":
            self._h2 = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            c = self._cell
            self.cells.append((c["key"], c["kind"], c["text"].strip()))
            self._cell = None
        elif tag == "h2":
            self._h2 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._h2:
            self.headings[-1] += data


def parse(path: Path) -> Cells:
    p = Cells()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def at(s, key: list):
    for k in key:
        if isinstance(s, dict):
            assert k in s, f"{key}: not in the summary"
            s = s[k]
        else:
            assert isinstance(k, int) and k < len(s), f"{key}: not in the summary"
            s = s[k]
    return s


def shown_equals(text: str, value, kind: str) -> bool:
    """The visible text is the summary value, written as the report writes that kind."""
    if value is None:
        return text == "–"
    if kind == "int":
        digits = text.replace(",", "")
        return digits.removeprefix("-").isdigit() and int(digits) == value
    if kind in ("rate", "mean", "pct", "s"):
        decimals = len(text.split(".")[1]) if "." in text else 0
        return abs(float(text.replace(",", "")) - value) <= 0.5 * 10 ** -decimals * (1 + 1e-9)
    if kind == "epoch":
        return text == datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "words":  # a structure said in words, not JSON: every key and value shows, no JSON syntax
        return not any(c in text for c in '{}"') and all(w in text for w in leaf_words(value))
    if isinstance(value, bool):
        return text == ("yes" if value else "no")
    if isinstance(value, (dict, list)):
        return json.loads(text) == value
    return text == str(value)


def leaf_words(v) -> list[str]:
    """The words a metadata value must show: its keys (underscores as spaces) and its leaves."""
    if isinstance(v, dict):
        return [w for k, x in v.items() if x not in ("", [], {}) for w in (str(k).replace("_", " "), *leaf_words(x))]
    if isinstance(v, list):
        return [w for x in v for w in leaf_words(x)]
    if isinstance(v, bool):
        return ["yes" if v else "no"]
    return ["unknown" if v is None else f"{v:g}" if isinstance(v, float) else str(v)]


def summary_json(trace: Path, *window: str) -> dict:
    return json.loads(run_cli("summary", str(trace), "--json", *window).stdout)


def check_tables(report: Path, summary: dict) -> Cells:
    """Every value cell equals summary --json; the tables cover the summary's numbers."""
    cells = parse(report)
    assert cells.cells, "no value cells in the report"
    for key, kind, text in cells.cells:
        assert shown_equals(text, at(summary, key), kind), f"cell {key}: shows {text!r}, summary has {at(summary, key)!r}"
    keys = {json.dumps(k) for k, _, _ in cells.cells}

    def covered(*key) -> None:
        assert json.dumps(list(key)) in keys, f"no table cell for {list(key)}"
    for a, n in summary["actions"].items():
        covered("actions", a)
        covered("rates", "mean_pps", a)
        covered("rates", "peak_pps", a)
    for t in summary["redirect_targets"]:
        covered("redirect_targets", t)
        covered("redirect_shares", t)
    for size in summary["flush_batches"]:
        covered("flush_batches", size)
    for t, bins in summary["flush_batches_by_target"].items():
        for size in bins:
            covered("flush_batches_by_target", t, size)
    if summary["flush_batches"]:
        for k in ("flush_count", "flush_frames", "flush_mean", "flush_median"):
            covered(k)
    for t, errs in summary["redirect_errors"].items():
        for e in errs:
            covered("redirect_errors", t, e)
    for v in summary["exceptions"]:
        covered("exceptions", v)
    for c in summary["driver_counters"]:
        covered("driver_counters", c)
    for a in summary["driver_verdicts"] or {}:
        covered("driver_verdicts", a)
        covered("driver_difference", a)
    for t in summary["devmap"]:
        covered("devmap", t, "sent")
        covered("devmap", t, "drops")
    covered("samples")
    covered("duration_s")
    return cells


def not_blank(img: QImage) -> None:
    assert not img.isNull()
    assert len(np.unique(pixels(img))) > 8, "image is (nearly) a single color"


def pixels(img: QImage) -> np.ndarray:
    """rows x columns of 0xAARRGGBB (a copy: the converted image is freed on return)."""
    rgb = img.convertToFormat(QImage.Format.Format_RGB32)
    line = rgb.bytesPerLine() // 4
    return np.frombuffer(rgb.constBits(), dtype=np.uint32, count=line * rgb.height()).reshape(
        rgb.height(), line)[:, :rgb.width()].copy()


def images_of(cells: Cells) -> list[QImage]:
    out = []
    for a in cells.images:
        src = a["src"]
        assert src.startswith("data:image/png;base64,"), "images must be embedded (self-contained HTML)"
        img = QImage()
        assert img.loadFromData(base64.b64decode(src.split(",", 1)[1]), "PNG")
        out.append(img)
    return out


def report(trace: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """`xdpscope report` as a user runs it, with no display at all."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    p = run_cli("report", str(trace), "-o", str(out), *args, env=env)
    assert out.exists() and out.stat().st_size > 0
    assert "Traceback" not in p.stderr and p.stderr.strip() == "", p.stderr
    return p


def pdf_pages(pdf: Path, tmp: Path) -> list[QImage]:
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is needed"
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp / "page")], check=True, timeout=120)
    pages = sorted(tmp.glob("page-*.png"))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert len(pages) == int(re.search(r"Pages:\s+(\d+)", info).group(1))
    return [QImage(str(p)) for p in pages]


# -- the bundled real recording ---------------------------------------------------------------

def test_html_report_of_the_whole_sample_trace(tmp_path):
    out = tmp_path / "r.html"
    report(SAMPLE, out)
    s = summary_json(SAMPLE)
    cells = check_tables(out, s)
    imgs = images_of(cells)
    assert len(imgs) == 5  # verdicts, fan-out, flushes, errors, NAPI/run time: all have data here
    for img in imgs:
        assert (img.width(), img.height()) == (1200, 460)
        not_blank(img)
    text = out.read_text()
    assert "src=\"http" not in text and "<link" not in text  # nothing outside the file
    # findings where the data shows them (the sample sends a quarter of the redirects to xs-nx: ENXIO)
    assert "Redirect errors: 1,440,000 frames redirected to xs-nx failed with ENXIO" in text
    assert "Drops at a target: xs-nx dropped 1,440,000" in text
    assert "Small flushes at a high rate" in text and "ABORTED verdicts" in text
    for h in ("Verdicts", "Redirect fan-out", "Flush sizes (flushes of each size)", "Redirect errors by errno",
              "Driver counters (ethtool -S deltas)", "Session"):
        assert h in cells.headings


def test_html_report_of_a_window_at_a_chosen_size(tmp_path):
    out = tmp_path / "w.html"
    report(SAMPLE, out, "--from", "12.5", "--to", "20", "--size", "800x300")
    s = summary_json(SAMPLE, "--from", "12.5", "--to", "20")
    assert 0 < s["samples"] < 801
    check_tables(out, s)
    for img in images_of(parse(out)):
        assert (img.width(), img.height()) == (800, 300)
        not_blank(img)


def test_pdf_report_pages_render(tmp_path):
    out = tmp_path / "r.pdf"
    report(SAMPLE, out, "--from", "5", "--to", "25")
    assert out.read_bytes().startswith(b"%PDF")
    pages = pdf_pages(out, tmp_path)
    assert len(pages) >= 2
    for page in pages:
        not_blank(page)
    # the numbers are text in the PDF, as in the HTML tables
    if shutil.which("pdftotext"):
        s = summary_json(SAMPLE, "--from", "5", "--to", "25")
        text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True).stdout
        for a in ("REDIRECT", "PASS", "ABORTED"):
            assert f"{s['actions'][a]:,}" in text
        assert f"{s['flush_count']:,}" in text


def test_png_report_is_one_tall_image(tmp_path):
    out = tmp_path / "r.png"
    report(SAMPLE, out, "--size", "900x350")
    img = QImage(str(out))
    assert img.width() == 900 + 2 * MARGIN
    assert img.height() > 5 * 350  # five plots and the tables below them
    not_blank(img)
    px = pixels(img)
    # light and printable (gui.palette.LIGHT): no dark plot blocks on the white page
    r, g, b = (px >> 16) & 255, (px >> 8) & 255, px & 255
    assert ((r > 200) & (g > 200) & (b > 200)).mean() > 0.85
    # a plot sits in it at exactly its pixels: some row holds its time axis line (the theme's axis colour)
    axis = (px & 0xFFFFFF) == 0x9A9A9A
    assert axis.sum(axis=1).max() >= 800


def test_report_in_process_uses_summarize(qapp, tmp_path):
    """The library path the GUI uses: build() holds summarize()'s dict as is."""
    from backend.data.summary import summarize
    from gui.report import build
    rep = build(SAMPLE, 30.0, 40.0, (400, 200))
    assert rep.summary == summarize(SAMPLE, 30.0, 40.0)
    assert all((p.image.width(), p.image.height()) == (400, 200) for p in rep.plots)


@pytest.mark.parametrize("args,message", [
    (["nosuch.xst", "-o", "{tmp}/r.html"], "no such trace file"),
    (["{junk}", "-o", "{tmp}/r.html"], "not an xdpscope trace"),
    (["{sample}", "-o", "{tmp}/r.docx"], "unknown report format '.docx'"),
    (["{sample}", "-o", "{tmp}/r"], "unknown report format"),
    (["{sample}", "-o", "{tmp}/r.html", "--from", "20", "--to", "10"], "empty window"),
    (["{sample}", "-o", "{tmp}/r.html", "--from", "abc"], "--from 'abc'"),
    (["{sample}", "-o", "{tmp}/r.html", "--from", "-5"], "must be a number of seconds"),
    (["{sample}", "-o", "{tmp}/r.html", "--from", "1000", "--to", "2000"], "no samples in the window"),
    (["{sample}", "-o", "{tmp}/r.html", "--size", "big"], "expected WIDTHxHEIGHT"),
    (["{sample}", "-o", "{tmp}/r.html", "--size", "10x10"], "each side must be"),
    (["{sample}", "-o", "{tmp}/nodir/r.html"], "no such directory"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    junk = tmp_path / "junk.xst"
    junk.write_bytes(b"not a trace" * 50)
    args = [a.format(tmp=tmp_path, junk=junk, sample=SAMPLE) for a in args]
    p = run_cli("report", *args, check=False, cwd=tmp_path)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert p.stderr.startswith("xdpscope: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr
    assert not list(tmp_path.glob("r.*"))


# -- GUI export --------------------------------------------------------------------------------

@pytest.fixture
def win(qtbot, tmp_path):
    from gui.main_window import MainWindow
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()
    w.show()
    assert w.open_trace(SAMPLE)
    w.frame(force=True)
    return w


def svg_numbers(svg: bytes) -> tuple[ET.Element, list[np.ndarray]]:
    root = ET.fromstring(svg)
    paths = []
    for el in root.iter():
        d = el.get("d") or el.get("points")
        if d:
            nums = np.array([float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", d)])
            if len(nums) >= 2:
                paths.append(nums.reshape(-1, 2) if len(nums) % 2 == 0 else nums[:, None])
    return root, paths


def test_export_one_plot_png_and_svg_exact_size(win, tmp_path):
    from gui.export import export
    png, svg = tmp_path / "v.png", tmp_path / "v.svg"
    img = export(win, "Verdicts", "png", 800, 600, png)
    assert (img.width(), img.height(), img.devicePixelRatio()) == (800, 600, 1.0)
    saved = QImage(str(png))
    assert (saved.width(), saved.height()) == (800, 600)
    not_blank(saved)
    export(win, "Verdicts", "svg", 800, 600, svg)
    root, paths = svg_numbers(svg.read_bytes())
    assert root.tag.endswith("svg") and root.get("width") == "800px" and root.get("height") == "600px"
    assert root.get("viewBox") == "0 0 800 600"
    # the curves are written in data coordinates: x = seconds since the session start (0 .. 40 s),
    # nothing like epoch seconds (1.7e9), which SVG's float coordinates would mangle
    end = float(win.replay.t_last)
    curves = [p for p in paths if p.shape[1] == 2 and len(p) > 100]
    assert curves, "no curve paths in the SVG"
    for c in curves:
        assert c[:, 0].min() >= 0 and c[:, 0].max() <= end + 1e-6
    assert max(abs(p).max() for p in paths) < 1e7


def test_export_every_panel_and_the_window(win, tmp_path):
    from gui.export import WHOLE_WINDOW, export, panel_targets
    for title, _ in panel_targets(win):
        img = export(win, title, "png", 640, 360, tmp_path / "p.png")
        assert (img.width(), img.height()) == (640, 360), title
        not_blank(img)
    before = win.size()
    img = export(win, WHOLE_WINDOW, "png", 1000, 700, tmp_path / "w.png")
    assert (img.width(), img.height()) == (1000, 700)
    not_blank(img)
    assert win.size() == before  # the window got its size back
    export(win, WHOLE_WINDOW, "svg", 1000, 700, tmp_path / "w.svg")
    assert ET.parse(tmp_path / "w.svg").getroot().get("width") == "1000px"


def test_copy_to_clipboard(win, qapp):
    from gui.export import export
    export(win, "Flush batches", "clipboard", 640, 480)
    got = qapp.clipboard().image()
    assert (got.width(), got.height()) == (640, 480)


def test_export_menu_and_session_report(win, tmp_path):
    from gui.export import current_view, report_source
    from gui.report import write_report
    titles = [a.text() for a in win.export_menu.actions()]
    assert any("PNG" in t for t in titles) and any("SVG" in t for t in titles)
    assert any("clipboard" in t for t in titles) and any("Report" in t for t in titles)
    assert report_source(win) is win.replay
    v = current_view(win)  # "the visible window" choice of the report dialog
    out = tmp_path / "visible.html"
    write_report(report_source(win), out, v.t0, v.t1, (600, 300))
    check_tables(out, summary_json(SAMPLE, "--from", repr(v.t0), "--to", repr(v.t1)))


def test_exact_pixels_on_a_hidpi_screen(tmp_path):
    """With a scale factor of 2 (HiDPI), a plot exported at 800x600 still has 800x600 pixels."""
    script = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from PySide6.QtWidgets import QApplication
app = QApplication([])
assert app.devicePixelRatio() == 2.0, app.devicePixelRatio()
from gui.report import load_model
from gui.render import panel_image, render_widget
from gui.plots import VerdictPanel
_, view, _ = load_model({str(SAMPLE)!r}, None, None)
img = panel_image(VerdictPanel, view, 800, 600)
print(img.width(), img.height(), img.devicePixelRatio())
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2"}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["800", "600", "1.0"]


# -- a fresh lab recording (real kernel) -------------------------------------------------------

@pytest.mark.kernel
def test_report_of_a_fresh_lab_recording(record, lab, tmp_path):
    from tests.test_engine import inject
    targets = [*lab.targets[:2], lab.nxtarget]
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(targets), "--hz", "20")
    inject(lab, 19200, 64)
    assert rec.stop() == 0
    s = summary_json(rec.out)
    assert s["actions"]["REDIRECT"] == 19200
    out = tmp_path / "lab.html"
    report(rec.out, out, "--size", "700x300")
    cells = check_tables(out, s)
    for img in images_of(cells):
        assert (img.width(), img.height()) == (700, 300)
        not_blank(img)
    text = out.read_text()
    assert f"frames redirected to {lab.nxtarget} failed with ENXIO" in text  # the target that cannot receive
    # and a window of it, as PDF
    t_end = s["span"][1]
    pdf = tmp_path / "lab.pdf"
    report(rec.out, pdf, "--from", "0", "--to", f"{t_end:.3f}")
    for page in pdf_pages(pdf, tmp_path):
        not_blank(page)


def test_export_and_report_dialogs(win, qtbot):
    from gui.export import WHOLE_WINDOW, ExportDialog, ReportDialog, current_view
    d = ExportDialog(win, "svg")
    qtbot.addWidget(d)
    assert d.target.itemText(0) == WHOLE_WINDOW and d.target.count() == 1 + len(win.panels)
    assert (d.width_box.value(), d.height_box.value()) == (win.width(), win.height())
    d.target.setCurrentIndex(1)  # a panel: its current size is offered
    assert (d.width_box.value(), d.height_box.value()) == (win.panels[0].width(), win.panels[0].height())
    r = ReportDialog(win, SAMPLE)
    qtbot.addWidget(r)
    assert r.window() == (None, None)
    r.visible.setChecked(True)
    v = current_view(win)
    assert r.window() == (v.t0, v.t1) and v.t1 == win.replay.position
    r.t_from.setValue(3.0)
    r.t_to.setValue(4.0)
    assert r.custom.isChecked() and r.window() == (3.0, 4.0)


def test_report_needs_samples(qtbot, tmp_path):
    from backend.errors import XdpscopeError
    from gui.export import report_source
    from gui.main_window import MainWindow
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()
    with pytest.raises(XdpscopeError, match="nothing to report yet"):
        report_source(w)


def test_long_windows_are_plotted_from_merged_samples(qapp):
    """More samples than the plots draw: consecutive samples are merged, nothing is lost."""
    from backend.data.sample import VERDICTS
    from backend.data.summary import summarize
    from gui.report import load_model
    s = summarize(SAMPLE, 2.0, 30.0)
    model, view, k = load_model(SAMPLE, 2.0, 30.0, max_rows=100)
    assert k == -(-s["samples"] // 100) and len(model.history) <= 100
    h = model.history
    totals = h.verdicts[view.sl].sum(axis=0)
    assert dict(zip(VERDICTS, totals.astype(int).tolist())) == s["actions"]
    assert h.dt[view.sl].sum() == pytest.approx(s["duration_s"])
    assert (view.t0, view.t1) == pytest.approx((2.0, 30.0), abs=1e-6)


def test_report_of_blocks_equals_report_of_the_file(qapp):
    """Blocks in memory and the trace file go through the same path: the same numbers, and the
    same plotted history, for a window."""
    from backend.data.trace import TraceReader
    from gui.report import Samples, build
    with TraceReader(SAMPLE) as r:
        meta, blocks = dict(r.meta), list(r.blocks(size=100))  # other block sizes than the file's read
    mem = build(Samples.of_blocks("in memory", meta, blocks), 3.0, 31.5, size=(300, 150))
    disk = build(SAMPLE, 3.0, 31.5, size=(300, 150))
    assert mem.summary == disk.summary and mem.findings == disk.findings and mem.name == "in memory"
    assert [p.title for p in mem.plots] == [p.title for p in disk.plots] and mem.merged == disk.merged


def test_merged_plots_do_not_depend_on_the_sources_block_sizes(qapp):
    """Merging k samples per plotted row groups the same samples whether the source yields
    Blocks of 100 (a live session's kept Blocks) or the file's own chunks."""
    from backend.data.trace import TraceReader
    from gui.report import Samples, load
    with TraceReader(SAMPLE) as r:
        meta, blocks = dict(r.meta), list(r.blocks(size=100))
    s1, m1, v1, k1 = load(Samples.of_blocks("mem", meta, blocks), 2.0, 38.0, max_rows=90)
    s2, m2, v2, k2 = load(SAMPLE, 2.0, 38.0, max_rows=90)
    assert k1 == k2 > 1 and 100 % k1 and s1 == {**s2}
    h1, h2 = m1.history, m2.history
    assert len(h1) == len(h2)
    for name in ("t", "dt", "verdicts", "flush", "napi", "run"):
        np.testing.assert_array_equal(getattr(h1, name)[h1.start:h1.end], getattr(h2, name)[h2.start:h2.end])
