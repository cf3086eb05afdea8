"""What the sidebar says, as pure functions: no bpy, stdlib only, so the tests run them without
Blender (tests/test_plugin_blender_text.py loads this file on its own).

The Video Sequence Editor's sidebar is narrow (about 30 characters of label at its default
width and 1x scale) and Blender cuts a long label at its end, which hides the end of a path (the
file name) and the end of a message (what to do). So: paths are shortened in the middle
(``/mnt/…/reel2/film.mov``), messages are wrapped over several label rows, and every label is
written to be short and clear rather than squeezed by Blender (``Fa -1``).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

ELLIPSIS = "\u2026"  # one character wide, in Blender's UI font as elsewhere
DEFAULT_CHARS = 30  # label characters in the default-width sidebar (and in background mode)
CHAR_PX = 6.5  # mean width of a label character at UI scale 1 (Blender's default font)
MARGIN_PX = 34  # panel and box margins of the sidebar, at UI scale 1


# ----------------------------------------------------------------------------- fitting text
def chars_for_width(region_width: int | None, ui_scale: float = 1.0) -> int:
    """How many label characters fit in a sidebar ``region_width`` pixels wide (default:
    :data:`DEFAULT_CHARS`, as in background mode where there is no region)."""
    if not region_width or region_width <= 0:
        return DEFAULT_CHARS
    scale = ui_scale if ui_scale and ui_scale > 0 else 1.0
    return max(16, int((region_width - MARGIN_PX * scale) / (CHAR_PX * scale)))


def fit(text: str, width: int) -> str:
    """One line of at most ``width`` characters, cut at its end with an ellipsis."""
    if len(text) <= width:
        return text
    return text[:max(width - 1, 0)].rstrip() + ELLIPSIS


def cut_middle(text: str, width: int) -> str:
    """At most ``width`` characters keeping both ends (a file's name and extension)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def shorten_path(path: str, width: int) -> str:
    """``path`` in at most ``width`` characters, folders dropped from its middle:
    ``/mnt/projects/feature/reel2/film.mov`` -> ``/mnt/…/reel2/film.mov``.

    The file's name is kept whole when it fits (else its middle is cut), then the folders
    nearest to it and the first ones from the root, taking turns, while they fit.
    """
    if len(path) <= width:
        return path
    sep = "\\" if path.count("\\") > path.count("/") else "/"
    parts = path.split(sep)
    if len(parts) < 3:
        return cut_middle(path, width)
    head, tail, middle = [parts[0]], [parts[-1]], parts[1:-1]

    def joined(h: list[str], t: list[str]) -> str:
        return sep.join(h + [ELLIPSIS] + t)

    if len(joined(head, tail)) > width:  # not even the root: "…/name", or the name cut
        name = parts[-1]
        if len(name) + 2 <= width:
            return ELLIPSIS + sep + name
        return cut_middle(name, width) if len(name) > width else (
            ELLIPSIS + name[len(name) - width + 1:])
    first, last = 0, len(middle) - 1  # the next folder to take from each end of the middle
    grew = True
    while grew and first <= last:
        grew = False
        # the folder holding the file says the most (reel, scene), so it is tried first
        if len(joined(head, [middle[last]] + tail)) <= width:
            tail.insert(0, middle[last])
            last -= 1
            grew = True
        if first <= last and len(joined(head + [middle[first]], tail)) <= width:
            head.append(middle[first])
            first += 1
            grew = True
    return joined(head, tail)


def _looks_like_path(token: str) -> bool:
    return "/" in token or "\\" in token


def wrap(text: str, width: int) -> list[str]:
    """``text`` over as many label rows of at most ``width`` characters as it needs; a path
    too long for one row is shortened in its middle rather than broken over two."""
    rows: list[str] = []
    for paragraph in (text or "").splitlines() or [""]:
        tokens = [shorten_path(t, width) if len(t) > width and _looks_like_path(t) else t
                  for t in paragraph.split()]
        rows.extend(textwrap.wrap(" ".join(tokens), width, break_long_words=True,
                                  break_on_hyphens=False) or [""])
    return rows


# ------------------------------------------------------------------------------ the labels
def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def face_label(index: int) -> str:
    """What a stem's face number means: -1 lets the pipeline choose, 0 is the leftmost."""
    return "Face: auto" if index < 0 else f"Face: {ordinal(index + 1)} from left"


def server_rows(deployment: str, url: str, width: int) -> list[str]:
    """``dub_film/lipdub on render1:4200`` (the scheme and the ``/api`` every URL has left
    out), over two rows if one is too narrow: the deployment, then the server."""
    host = re.sub(r"^[a-z]+://", "", (url or "").strip()).rstrip("/")
    host = re.sub(r"/api$", "", host)
    if not host:
        return [fit(deployment, width)]
    one = f"{deployment} on {host}"
    return [one] if len(one) <= width else [fit(deployment, width), fit(f"on {host}", width)]


# -------------------------------------------------------------------------- lipdub outputs
# default_output_path (plugin/core/jobs.py): <film>_dub_<characters>_<YYYYmmdd-HHMMSS>[-n].ext
_OUTPUT_FILE_RE = re.compile(r"_dub_[^/\\]*_\d{8}-\d{6}(-\d+)?\.[A-Za-z0-9]+$")
# the add-on names the strips it adds "<original>.dub" (Blender may add ".001")
_OUTPUT_STRIP_RE = re.compile(r"\.dub(\.\d{3})?$")


def is_dub_output(strip_name: str, filepath: str = "") -> bool:
    """Whether a strip looks like a lipdub result by its name or its file's name (the add-on
    also marks the strips it adds with a custom property: see ops.is_lipdub_output)."""
    return bool(_OUTPUT_STRIP_RE.search(strip_name or "")
                or _OUTPUT_FILE_RE.search(filepath or ""))


# ---------------------------------------------------------------------------- QC verdict
_FLAGGED_RE = re.compile(r"QC: (\d+) of (\d+) shots? flagged")
_NONE_FLAGGED_RE = re.compile(r"QC: no shots? flagged of (\d+)")
# the lipdub-result artifact: "... QC: 2 shot(s) flagged (/path/film_qc/qc.html)."
_RESULT_RE = re.compile(r"QC: (\d+) shot\(s\) flagged \((.+)\)\.?\s*$", re.S)


@dataclass(frozen=True)
class Verdict:
    """QC's verdict on a finished dub; ``html`` is the report as the render machines wrote
    it (map it with the add-on's path mapping before opening it here)."""

    flagged: int
    shots: int | None = None
    html: str | None = None

    @property
    def ok(self) -> bool:
        return self.flagged == 0

    def label(self) -> str:
        """``QC ok: 0 of 14 flagged``, ``QC: 2 of 14 shots flagged``."""
        of = f" of {self.shots}" if self.shots else ""
        if self.ok:
            return f"QC ok: 0{of} flagged" if of else "QC ok: no shot flagged"
        shots = "shot" if (self.shots or self.flagged) == 1 else "shots"
        return f"QC: {self.flagged}{of} {shots} flagged"


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def qc_verdict(summary: dict | None, state_name: str = "",
               result_text: str | None = None) -> Verdict | None:
    """The verdict from what the client read of a completed run: the run summary's ``qc``
    (``<output>.json``), else the run's state name (``QC: 2 of 14 shots flagged`` when QC
    flagged shots), else the ``lipdub-result`` artifact's text. None: no QC report."""
    flagged = shots = html = None
    qc = summary.get("qc") if isinstance(summary, dict) else None
    if isinstance(qc, dict):
        flagged, shots = _int(qc.get("shots_flagged")), _int(qc.get("shots"))
        html = qc.get("html") if isinstance(qc.get("html"), str) else None
        line = str(qc.get("verdict") or "")
        if flagged is None and _NONE_FLAGGED_RE.search(line):
            flagged, shots = 0, shots or int(_NONE_FLAGGED_RE.search(line).group(1))
        elif flagged is None and _FLAGGED_RE.search(line):
            found = _FLAGGED_RE.search(line)
            flagged, shots = int(found.group(1)), shots or int(found.group(2))
    found = _FLAGGED_RE.search(state_name or "")
    if found and flagged is None:
        flagged, shots = int(found.group(1)), int(found.group(2))
    found = _RESULT_RE.search(result_text or "")
    if found:
        flagged = int(found.group(1)) if flagged is None else flagged
        html = html or found.group(2)
    return None if flagged is None else Verdict(flagged, shots, html)


def without_verdict(message: str, verdict_line: str) -> str:
    """The client's completion message less the QC part the panel shows on its own row
    (``done: 40 of 50 frames changed; QC: ... (report: ...)``)."""
    if verdict_line and f"; {verdict_line}" in message:
        return message.split(f"; {verdict_line}", 1)[0]
    return message
