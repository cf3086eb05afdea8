"""qc.html as a producer sees it: rendered by headless Chromium, read back from its DOM.

The report is written from a small hand-made QC dict (one flagged shot, a routing decision, the
real provenance tags), so no media or weights are needed; the browser is, and without one the
test skips (``.ci/install_packages.sh`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipdub.pipeline.media.provenance import provenance_metadata
from lipdub.pipeline.media.timecode import parse_timecode
from lipdub.pipeline.qc.checks import QCSettings, flag_segment
from lipdub.pipeline.qc.report import write_contact_sheet, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"chromium is not installed: none of {', '.join(BROWSERS)} is on PATH "
                "(.ci/install_packages.sh installs it)")


class _Page(HTMLParser):
    """What a reader sees of a page: headings, paragraphs and captions (whitespace folded),
    table rows as lists of cell texts, link targets with their text, image sources."""

    HIDDEN = {"head", "style", "script", "title"}
    BLOCKS = {"h1", "h2", "h3", "p", "figcaption"}

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, str]] = []
        self.rows: list[list[str]] = []
        self.links: dict[str, str] = {}
        self.images: list[str] = []
        self._hidden = 0
        self._in_cell = False
        self._block: tuple[str, list[str]] | None = None
        self._link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BLOCKS:
            self._block = (tag, [])
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._in_cell = True
        elif tag == "a":
            self._link = (attrs["href"], [])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self._hidden -= 1
        elif tag in self.BLOCKS and self._block:
            self.blocks.append((tag, _fold(self._block[1])))
            self._block = None
        elif tag in ("td", "th"):
            self.rows[-1][-1] = _fold([self.rows[-1][-1]])
            self._in_cell = False
        elif tag == "a" and self._link:
            self.links[self._link[0]] = _fold(self._link[1])
            self._link = None

    def handle_data(self, data):
        if self._hidden:
            return
        for open_text in (self._block, self._link):
            if open_text:
                open_text[1].append(data)
        if self._in_cell:
            self.rows[-1][-1] += " " + data

    def texts(self, tag: str) -> list[str]:
        return [text for t, text in self.blocks if t == tag]


def _fold(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


def _report(folder: Path) -> Path:
    """A QC report of one flagged shot (frames [0, 12) of a film from 10:00:00:00 at 25 fps):
    anna on face 1 in [4, 12), every figure past its threshold. Returns the qc.html path."""
    seg = {"name": "shot0000_track1_0000004-0000012", "shot": 0, "character": "anna",
           "start": 4, "end": 12, "frames_measured": 8, "seam": 5.5, "flicker": 3.5,
           "relative_to": "source", "silent": ["anna's stem"],
           "sync": {"measured": True, "metric": "syncnet_v2", "model": "syncnet_v2.model",
                    "lse_d": 8.1, "lse_c": 2.5, "offset_frames": 2, "offset_seconds": 0.08,
                    "grid_fps": 25.0, "conf_times": [0.16, 0.2, 0.24, 0.28, 0.32, 0.36],
                    "conf": [1.0, 2.0, 2.5, 1.5, 1.0, 0.5]}}
    seg["flags"] = flag_segment(seg, QCSettings())
    tile = np.full((40, 30, 3), 128, np.uint8)
    sheet = write_contact_sheet([(4, tile, tile), (11, tile, tile)], folder, 0)
    decision = {"character": "anna", "first": 4, "end": 12, "track": 1, "rule": "override",
                "reason": "the job says so", "score": None, "margin": None, "evidence": []}
    report = {
        "timecode": parse_timecode("10:00:00:00", 25).as_dict(), "frame_rate": "25",
        "consent": "actors agreed, 2024-05-01",
        "provenance": provenance_metadata([{"start": 4, "end": 12, "character": "anna",
                                            "shot": 0}], rate=25),
        "output": str(folder / "film_dub.mov"), "source": "film.mov", "audio": "mix.wav",
        "sync_model": {"kind": "syncnet_v2", "weights": "syncnet_v2.model"},
        "loudness": {"measured": False, "reason": "not asked"},
        "thresholds": asdict(QCSettings()), "shots_flagged": 1, "segments_flagged": 1,
        "shots": [{"shot": 0, "start": 0, "end": 12, "segments": [seg], "flagged": True}],
        "routing": [{"shot": 0, "start": 0, "end": 12, "original_heard": [],
                     "faces": [{"track": 1, "from_left": 0, "first": 0, "end": 12}],
                     "stems": {"anna": [[4, 12]]}, "decisions": [decision]}],
    }
    return Path(write_report(report, {0: sheet}, folder)["html"])


@pytest.fixture(scope="module")
def rendered(browser, tmp_path_factory) -> tuple[Path, _Page]:
    """qc.html and its DOM after Chromium has loaded it (Chromium's stderr is noise: unread)."""
    folder = tmp_path_factory.mktemp("qc_rendered")
    page = _report(folder)
    done = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
         f"--user-data-dir={folder / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, encoding="utf-8", timeout=120, check=True)
    parsed = _Page()
    parsed.feed(done.stdout)
    assert parsed.blocks, f"Chromium dumped no page: {done.stdout[:300]!r}"
    return page, parsed


def test_a_producer_reads_the_verdict_thresholds_and_provenance(rendered):
    html_path, page = rendered
    assert page.texts("h1") == ["QC: film_dub.mov"]
    assert "1 of 1 shots flagged, 1 segments." in page.texts("p")
    assert "Shot 0 (frames [0, 12), 10:00:00:00–10:00:00:11): FLAGGED" in page.texts("h2")
    # Every figure's column says its unit and the value that flags it (QC's own thresholds).
    t = QCSettings()
    heads = next(row for row in page.rows if row[0] == "segment")
    for text in ("LSE-D feature distance; flagged: never",
                 f"LSE-C feature distance; flagged: ≤ {t.min_lse_c:g}",
                 f"offset film frames (seconds); flagged: |offset| > {t.max_offset_frames}",
                 f"seam grey levels (0–255); flagged: > {t.max_seam:g}",
                 f"flicker grey levels (0–255); flagged: > {t.max_flicker:g}"):
        assert text in heads
    assert "frames [first, end)" in heads
    segment = next(row for row in page.rows if row[0].startswith("shot0000_track1"))
    assert segment[2:4] == ["[4, 12)", "10:00:00:04–10:00:00:11"]
    assert segment[7] == "+2 (+0.080 s)"
    assert "digital silence in the anna's stem (every sample zero)" in segment[-1]
    assert any(p.startswith("Frame ranges are half-open, [first, end)") and
               "from 10:00:00:00 at 25 fps" in p for p in page.texts("p"))
    # Provenance: a key/value table, its segments unpacked, not escaped JSON.
    assert ["lipdub_altered", "lip-sync"] in page.rows
    assert ["lipdub_segments", "start: 4, end: 12, character: anna, shot: 0"] in page.rows
    assert not any(cell.startswith(("{", "[{")) for row in page.rows for cell in row)
    output = html_path.parent / "film_dub.mov"
    assert page.links == {output.resolve().as_uri(): str(output)}


def test_every_picture_is_on_disk_captioned_and_the_plot_has_axis_labels(rendered):
    html_path, page = rendered
    assert page.images == ["shot0000_sheet.png", "shot0000_sync.png", "shot0000_routing.png"]
    for name in page.images:
        assert (html_path.parent / name).stat().st_size > 0, name
    sheet, plot = page.texts("figcaption")
    assert sheet.startswith("Shot 0: anna, face 1, frames [4, 12), 10:00:00:04–10:00:00:11. "
                            "Rows: before (source) above after (output)")
    assert "sync confidence per picture (syncnet_v2, higher is better) against time in " \
           "seconds" in plot
    # The plot's axis labels: "time (s)" under the middle of the x axis, the confidence's name
    # up the left edge between the value ticks (both blank before they were drawn).
    image = cv2.imread(str(html_path.parent / "shot0000_sync.png"), cv2.IMREAD_GRAYSCALE)
    height, width = image.shape
    assert (image[height - 24: height - 4, width // 2 - 40: width // 2 + 40] < 128).any()
    assert (image[height // 3: 2 * height // 3, :16] < 128).any()
