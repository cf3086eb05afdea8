"""QC outputs: before/after contact sheets and sync-confidence plots (PNG, drawn with OpenCV),
``qc.json`` for machines and ``qc.html`` for people: flagged shots first, every figure with its
unit and the value that flags it, frame ranges ``[first, end)`` with their timecodes, captioned
pictures, provenance as a table and a link to the output.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from lipdub.pipeline.media.timecode import frames_to_timecode, parse_timecode
from lipdub.pipeline.partial_files import remove_stale_partials, write_image, write_text
from lipdub.pipeline.qc.checks import QCSettings

_COLOURS = [(200, 90, 30), (40, 140, 230), (60, 170, 60), (170, 60, 170), (30, 160, 200)]
Clock = Callable[[int], str]  # frame number to timecode


def contact_sheet(tiles: list[tuple[int, np.ndarray | None, np.ndarray]]) -> np.ndarray:
    """Columns of (frame number, source crop above, output crop below) as one BGR image."""
    height = max(t[2].shape[0] for t in tiles)
    widths = [max(t[2].shape[1], 0 if t[1] is None else t[1].shape[1]) for t in tiles]
    rows = 2 if any(t[1] is not None for t in tiles) else 1
    label = 22
    sheet = np.full((label + rows * (height + 4), sum(widths) + 4 * len(tiles) + 80, 3), 32,
                    np.uint8)
    names = ["before", "after"] if rows == 2 else ["after"]
    for r, name in enumerate(names):
        cv2.putText(sheet, name, (4, label + r * (height + 4) + height // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    x = 80
    for (frame, before, after), width in zip(tiles, widths):
        cv2.putText(sheet, f"#{frame}", (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230),
                    1, cv2.LINE_AA)
        images = [before, after] if rows == 2 else [after]
        for r, image in enumerate(images):
            if image is not None:
                y = label + r * (height + 4)
                sheet[y: y + image.shape[0], x: x + image.shape[1]] = image
        x += width + 4
    return sheet


def _vertical_text(text: str, length: int, colour) -> np.ndarray:
    """``text`` read bottom to top (a y axis label), cut to ``length`` pixels, on white."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), base = cv2.getTextSize(text, font, 0.4, 1)
    strip = np.full((height + base + 2, width + 4, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, height + 1), font, 0.4, colour, 1, cv2.LINE_AA)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)[-length:]


def confidence_plot(series: list[tuple[str, list[float], list[float]]], size=(800, 240),
                    title: str = "", y_label: str = "confidence") -> np.ndarray:
    """Per-picture sync confidence against time (s), one line per segment, as a BGR image;
    the axes are labelled ``time (s)`` and ``y_label``."""
    width, height = size
    left, right, top, bottom = 72, 12, 26, 30
    image = np.full((height, width, 3), 255, np.uint8)
    times = [t for _, ts, _ in series for t in ts]
    values = [v for _, _, vs in series for v in vs]
    t_lo, t_hi = min(times), max(times)
    v_lo, v_hi = min(min(values), 0.0), max(max(values), 1e-6)
    t_hi = t_hi if t_hi > t_lo else t_lo + 1

    def xy(t: float, v: float) -> tuple[int, int]:
        x = left + (t - t_lo) / (t_hi - t_lo) * (width - left - right)
        y = top + (v_hi - v) / (v_hi - v_lo) * (height - top - bottom)
        return int(round(x)), int(round(y))

    cv2.rectangle(image, (left, top), (width - right, height - bottom), (180, 180, 180), 1)
    cv2.line(image, xy(t_lo, 0), xy(t_hi, 0), (150, 150, 150), 1)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (60, 60, 60)
    for value in sorted({round(v_lo, 2), 0.0, round(v_hi, 2)}):
        cv2.putText(image, f"{value:.2f}", (18, xy(t_lo, value)[1] + 4), font, 0.38, grey, 1,
                    cv2.LINE_AA)
    label = _vertical_text(y_label, height - top - bottom, grey)
    y0 = top + (height - top - bottom - label.shape[0]) // 2
    image[y0: y0 + label.shape[0], 0: label.shape[1]] = label
    for t in (t_lo, t_hi):
        x = xy(t, v_lo)[0]
        cv2.putText(image, f"{t:.2f}s", (max(0, x - 20), height - 10), font, 0.38, grey, 1,
                    cv2.LINE_AA)
    cv2.putText(image, "time (s)", ((left + width - right) // 2 - 28, height - 10), font, 0.4,
                grey, 1, cv2.LINE_AA)
    cv2.putText(image, title or "sync confidence", (left, 17), font, 0.45, (20, 20, 20), 1,
                cv2.LINE_AA)
    for i, (name, ts, vs) in enumerate(series):
        colour = _COLOURS[i % len(_COLOURS)]
        points = np.array([xy(t, v) for t, v in zip(ts, vs)], np.int32)
        if len(points) > 1:
            cv2.polylines(image, [points], False, colour, 2, cv2.LINE_AA)
        cv2.putText(image, name[:40], (width - right - 300, top + 14 * (i + 1)), font, 0.38,
                    colour, 1, cv2.LINE_AA)
    return image


def write_contact_sheet(tiles: list, out_dir: Path, shot: int) -> str:
    """Write one shot's contact sheet PNG into ``out_dir``; returns its file name."""
    path = out_dir / f"shot{shot:04d}_sheet.png"
    write_image(path, contact_sheet(sorted(tiles, key=lambda t: t[0])))
    return path.name


def write_report(report: dict, sheets: dict[int, str], out_dir: Path) -> dict:
    """Write the sync plots, ``qc.json`` and ``qc.html`` into ``out_dir`` (the contact sheets,
    named in ``sheets``, are there already); return the report.

    ``out_dir`` is the report's own folder, not a temporary one renamed at the end, so each file
    is written atomically (a killed run leaves no half a ``qc.json`` that reads as a report);
    ``qc.json`` comes last, so its presence says the rest is there. Not durable: the report is a
    reading of the output, which ``lipdub qc`` measures again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)  # what a killed QC of the same output left
    for shot in report["shots"]:
        name = f"shot{shot['shot']:04d}"
        shot["contact_sheet"], shot["sync_plot"] = sheets.get(shot["shot"]), None
        measured = [s for s in shot["segments"] if s["sync"].get("measured") and s["sync"]["conf"]]
        series = [(s["name"], s["sync"]["conf_times"], s["sync"]["conf"]) for s in measured]
        if series:
            path = out_dir / f"{name}_sync.png"
            write_image(path, confidence_plot(
                series, title=f"shot {shot['shot']}: sync confidence per picture",
                y_label=f"confidence ({measured[0]['sync']['metric']})"))
            shot["sync_plot"] = path.name
    from lipdub.pipeline.routing_report import routing_strip

    for shot in report.get("routing") or []:
        shot["strip"] = f"shot{shot['shot']:04d}_routing.png"
        write_image(out_dir / shot["strip"], routing_strip(shot))
    json_path, html_path = out_dir / "qc.json", out_dir / "qc.html"
    write_text(html_path, render_html(report))
    write_text(json_path, json.dumps(report, indent=2))
    return {**report, "json": str(json_path), "html": str(html_path)}


def _clock(report: dict) -> Clock | None:
    """Frame number to timecode: from the report's start timecode, else from 00:00:00:00 at its
    frame rate; None when it has neither (then frames are shown alone)."""
    start = report.get("timecode")
    if start:
        return parse_timecode(start["timecode"], Fraction(start["rate"])).shifted
    rate = report.get("frame_rate")
    return (lambda frame: frames_to_timecode(frame, Fraction(rate))) if rate else None


def _span_heads(clock: Clock | None) -> str:
    """Table headers of a frame range and, with a clock, its timecodes."""
    return "<th>frames [first, end)</th>" + (
        "<th>timecode in–out<br><small>out: last frame shown</small></th>" if clock else "")


def _span_cells(first: int, end: int, clock: Clock | None) -> list[str]:
    return [f"[{first}, {end})", *([f"{clock(first)}–{clock(end - 1)}"] if clock else [])]


def _span(first: int, end: int, clock: Clock | None) -> str:
    """A frame range in running text: ``frames [4, 12), 01:00:00:04–01:00:00:11``."""
    frames, *timecodes = _span_cells(first, end, clock)
    return ", ".join([f"frames {frames}", *timecodes])


def _row(cells: list) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _routing_html(routing: list[dict] | None, clock: Clock | None) -> list[str]:
    """Who speaks: pieces left alone first (each wants an override or a look), then per shot
    the routing strip and every decision with its evidence."""
    if routing is None:
        return []
    esc = html.escape
    pieces = [(shot["shot"], d) for shot in routing for d in shot["decisions"]]
    alone = [(s, d) for s, d in pieces if d["track"] is None and d["rule"] not in
             ("no_face", "off_screen")]
    out = ["<h2 id='routing'>Who speaks (routing)</h2>",
           f"<p>{sum(d['track'] is not None for _, d in pieces)} of {len(pieces)} pieces of "
           f"speech synced; {len(alone)} left alone with faces on screen (add an override in "
           "the job if one of them is a face speaking):</p>"]
    header = (f"<tr><th>shot</th><th>character</th>{_span_heads(clock)}<th>face</th>"
              "<th>rule</th><th>why</th><th>evidence per face</th></tr>")

    def row(shot: int, d: dict) -> str:
        return _row([shot, d["character"], *_span_cells(d["first"], d["end"], clock),
                     "left alone" if d["track"] is None else d["track"], d["rule"], d["reason"],
                     "; ".join(d["evidence"]) or "–"])

    if alone:
        out += ["<table>", header, *(row(s, d) for s, d in alone), "</table>"]
    for shot in routing:
        out.append(f"<h3>Shot {shot['shot']} ({_span(shot['start'], shot['end'], clock)})</h3>")
        if shot.get("strip"):
            out.append(f"<p><img src='{esc(shot['strip'])}' alt='routing strip'></p>")
        if shot["decisions"]:
            out += ["<table>", header, *(row(shot["shot"], d) for d in shot["decisions"]),
                    "</table>"]
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _judged(seg: dict, key: str) -> str:
    """A seam or flicker figure, said to be unjudged where nothing untouched was at hand."""
    if seg.get("relative_to") == "nothing" and seg[key] is not None:
        return f"{_fmt(seg[key])} (not judged: no source, no untouched frames beside)"
    return _fmt(seg[key])


def _figures(report: dict) -> list[tuple[str, str, str, str]]:
    """(figure, unit, what it measures, the value that flags it) for each figure of a segment,
    from the thresholds the report was judged by."""
    t = report.get("thresholds") or asdict(QCSettings())
    kind = (report.get("sync_model") or {}).get("kind")
    low_c = {"syncnet_v2": f"≤ {t['min_lse_c']:g}",
             "expert": f"≤ {t['min_expert_c']:g} (the expert's own scale)"}.get(
        kind, f"≤ {t['min_lse_c']:g} (syncnet_v2), ≤ {t['min_expert_c']:g} (expert)")
    return [
        ("LSE-D", "feature distance", "mouth against sound at the best offset; lower is better "
         "(shown to compare with published figures)", "never"),
        ("LSE-C", "feature distance", "sync confidence: median distance over offsets minus "
         "LSE-D; higher is better", low_c),
        ("offset", "film frames (seconds)", "A/V offset found by the sync model",
         f"|offset| > {t['max_offset_frames']}"),
        ("seam", "grey levels (0–255)", "brightness step the composite adds across the mask's "
         "edge (against the source, or the face's untouched frames beside the segment)",
         f"> {t['max_seam']:g}"),
        ("flicker", "grey levels (0–255)", "frame-to-frame flicker the composite adds inside "
         "the mouth (against the same)", f"> {t['max_flicker']:g}"),
    ]


def _timecodes_note(report: dict) -> str:
    """What the report's timecodes count from (as :func:`_clock` counts them)."""
    start = report.get("timecode")
    rate = (start or {}).get("rate") or report.get("frame_rate")
    if not rate:
        return "No frame rate known, so no timecodes."
    origin = start["timecode"] if start else "00:00:00:00"
    why = "the picture's start timecode" if start else "the picture has no start timecode"
    return (f"Timecodes run from {origin} at {float(Fraction(rate)):g} fps ({why}); the out "
            "point is the last frame shown.")


def _legend_html(report: dict) -> list[str]:
    """How to read the tables: each figure's unit and the value that flags it, and what frame
    ranges and timecodes mean."""
    rows = "".join(_row([name, unit, meaning, flags])
                   for name, unit, meaning, flags in _figures(report))
    return ["<h2 id='legend'>Reading the figures</h2>",
            "<table><tr><th>figure</th><th>unit</th><th>what it is</th><th>flagged when</th>"
            f"</tr>{rows}</table>",
            "<p>Frame ranges are half-open, [first, end): the end frame is the first one not "
            f"included. {_timecodes_note(report)}</p>"]


def _plain(value) -> str:
    """A header value as people read it: JSON text unpacked (``lipdub_segments``), a list one
    item a line, a mapping as ``key: value`` pairs; escaped."""
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, list):
        return "<br>".join(_plain(item) for item in value)
    if isinstance(value, dict):
        return html.escape(", ".join(f"{k}: {v}" for k, v in value.items()))
    return html.escape(str(value))


def _header_html(label: str, value) -> str:
    """Consent, provenance...: text in a line, a mapping as a key/value table."""
    if not isinstance(value, dict):
        return f"<p><b>{label}:</b> {_plain(value)}</p>"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_plain(v)}</td></tr>"
                   for k, v in value.items())
    return f"<p><b>{label}:</b></p><table class='kv'>{rows}</table>"


def _face(seg: dict, routing_shot: dict | None) -> int | None:
    """The face (routing track) a segment was synced on: its character's routed piece there."""
    for d in (routing_shot or {}).get("decisions", []):
        if (d["track"] is not None and d["character"] == seg["character"]
                and d["first"] < seg["end"] and seg["start"] < d["end"]):
            return d["track"]
    return None


def _who(seg: dict, routing_shot: dict | None, clock: Clock | None) -> str:
    """Whom and when a segment shows: ``anna, face 1, frames [4, 12), 01:00:00:04–...``."""
    face = _face(seg, routing_shot)
    return ", ".join([seg["character"] or "character not known",
                      f"segment {seg['name']}" if face is None else f"face {face}",
                      _span(seg["start"], seg["end"], clock)])


def _figure_html(src: str, alt: str, caption: str) -> str:
    esc = html.escape
    return (f"<figure><img src='{esc(src)}' alt='{esc(alt)}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _shot_figures(report: dict, shot: dict, routing_shot: dict | None,
                  clock: Clock | None) -> list[str]:
    """The shot's contact sheet and sync plot, each captioned with who and when it shows."""
    out = []
    if shot.get("contact_sheet"):
        who = "; ".join(_who(seg, routing_shot, clock) for seg in shot["segments"])
        rows = "before (source) above after (output)" if report.get("source") else \
            "after (output) only, no source given"
        out.append(_figure_html(shot["contact_sheet"], f"contact sheet, shot {shot['shot']}",
                                f"Shot {shot['shot']}: {who}. Rows: {rows}; each column is "
                                "headed by its frame number."))
    if shot.get("sync_plot"):
        metric = next(s["sync"]["metric"] for s in shot["segments"] if s["sync"].get("measured"))
        out.append(_figure_html(shot["sync_plot"], f"sync confidence, shot {shot['shot']}",
                                f"Shot {shot['shot']}: sync confidence per picture ({metric}, "
                                "higher is better) against time in seconds from the film's "
                                "first picture, one line per segment."))
    return out


def render_html(report: dict) -> str:
    """A self-contained page (images by relative name) listing flagged shots first."""
    esc = html.escape
    sync = report.get("sync_model")
    loud = report.get("loudness") or {}
    clock = _clock(report)
    output = Path(report["output"])
    head = [
        f"<h1>QC: {esc(output.name)}</h1>",
        f"<p>{report['shots_flagged']} of {len(report['shots'])} shots flagged, "
        f"{report['segments_flagged']} segments.</p>",
        f"<p>Output: <a href='{esc(output.resolve().as_uri())}'>{esc(str(output))}</a></p>",
        "<p>Sync measured with " + (esc(f"{sync['kind']} ({sync['weights']})") if sync
                                    else "nothing: <b>not measured</b> (no sync model given)")
        + "</p>",
        "<p>Loudness: " + (f"{_fmt(loud.get('integrated_lufs'))} LUFS integrated, sample peak "
                           f"{_fmt(loud.get('sample_peak_dbfs'))} dBFS" if loud.get("measured")
                           else "not measured (" + esc(str(loud.get("reason", ""))) + ")")
        + "</p>",
    ]
    if report.get("audio_silent"):
        head.append("<p class='flagged'><b>The delivered audio is digital silence throughout"
                    "</b> (every sample zero)</p>")
    mix = report.get("stem_mix")
    if mix:
        head.append("<p>Stems summed: " + (
            f"<b>{mix['clipped_samples']} samples clipped</b> (peak {mix['peak']:.2f} x full "
            "scale); deliver a mastered mix (output.audio)" if mix["clipped_samples"]
            else f"no clipping (peak {mix['peak']:.2f} x full scale)") + "</p>")
    for damage in report.get("damage") or []:  # the film's, accepted by the job
        at = f" ({damage['time']:.3f} s)" if damage.get("time") is not None else ""
        head.append(f"<p class='flagged'><b>Damaged source</b>: frame {damage['frame']}{esc(at)}"
                    f": {esc(damage['what'])}</p>")
    for key, label in (("consent", "Rights / consent"), ("provenance", "Provenance")):
        if report.get(key):
            head.append(_header_html(label, report[key]))
    head += _legend_html(report)
    figure_heads = "".join(f"<th>{esc(name)}<br><small>{esc(unit)}; flagged: {esc(flags)}"
                           "</small></th>" for name, unit, _, flags in _figures(report))
    routing = {shot["shot"]: shot for shot in report.get("routing") or []}
    body = []
    for shot in report["shots"]:
        state = "FLAGGED" if shot["flagged"] else "ok"
        body.append(f"<h2 class='{state.lower()}'>Shot {shot['shot']} "
                    f"({_span(shot['start'], shot['end'], clock)}): {state}</h2>")
        body.append(f"<table><tr><th>segment</th><th>character</th>{_span_heads(clock)}"
                    f"<th>metric</th>{figure_heads}<th>flags</th></tr>")
        for seg in shot["segments"]:
            s = seg["sync"]
            offset = (f"{s['offset_frames']:+d} ({s['offset_seconds']:+.3f} s)"
                      if s.get("measured") else "–")
            body.append(_row([seg["name"], seg["character"] or "",
                              *_span_cells(seg["start"], seg["end"], clock),
                              s.get("metric", "not measured"), _fmt(s.get("lse_d")),
                              _fmt(s.get("lse_c")), offset, _judged(seg, "seam"),
                              _judged(seg, "flicker"), "; ".join(seg["flags"]) or "none"]))
        body.append("</table>")
        body += _shot_figures(report, shot, routing.get(shot["shot"]), clock)
    body += _routing_html(report.get("routing"), clock)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
             "th small{font-weight:normal;color:#555}table.kv th{text-align:left}"
             "figure{margin:1em 0}figcaption{font-size:13px;color:#333}"
             "h2.flagged{color:#b00}h2.ok{color:#070}img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>QC "
            f"{esc(output.name)}</title><style>{style}</style></head><body>"
            + "\n".join(head + body) + "</body></html>\n")
