"""QC outputs: before/after contact sheets and sync-confidence plots (PNG, drawn with OpenCV),
``qc.json`` for machines and ``qc.html`` for people (flagged shots first).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import cv2
import numpy as np

_COLOURS = [(200, 90, 30), (40, 140, 230), (60, 170, 60), (170, 60, 170), (30, 160, 200)]


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


def confidence_plot(series: list[tuple[str, list[float], list[float]]], size=(800, 240),
                    title: str = "") -> np.ndarray:
    """Per-picture sync confidence against time (s), one line per segment, as a BGR image."""
    width, height = size
    left, right, top, bottom = 56, 12, 26, 30
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
    font = cv2.FONT_HERSHEY_SIMPLEX
    for value in sorted({round(v_lo, 2), 0.0, round(v_hi, 2)}):
        cv2.putText(image, f"{value:.2f}", (2, xy(t_lo, value)[1] + 4), font, 0.38, (60, 60, 60),
                    1, cv2.LINE_AA)
    for t in (t_lo, t_hi):
        x = xy(t, v_lo)[0]
        cv2.putText(image, f"{t:.2f}s", (max(0, x - 20), height - 10), font, 0.38,
                    (60, 60, 60), 1, cv2.LINE_AA)
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
    cv2.imwrite(str(path), contact_sheet(sorted(tiles, key=lambda t: t[0])))
    return path.name


def write_report(report: dict, sheets: dict[int, str], out_dir: Path) -> dict:
    """Write the sync plots, ``qc.json`` and ``qc.html`` into ``out_dir`` (the contact sheets,
    named in ``sheets``, are there already); return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for shot in report["shots"]:
        name = f"shot{shot['shot']:04d}"
        shot["contact_sheet"], shot["sync_plot"] = sheets.get(shot["shot"]), None
        series = [(s["name"], s["sync"]["conf_times"], s["sync"]["conf"])
                  for s in shot["segments"] if s["sync"].get("measured") and s["sync"]["conf"]]
        if series:
            path = out_dir / f"{name}_sync.png"
            cv2.imwrite(str(path), confidence_plot(series, title=f"shot {shot['shot']}: sync "
                                                                 "confidence per picture"))
            shot["sync_plot"] = path.name
    from .routing_report import routing_strip

    for shot in report.get("routing") or []:
        shot["strip"] = f"shot{shot['shot']:04d}_routing.png"
        cv2.imwrite(str(out_dir / shot["strip"]), routing_strip(shot))
    json_path, html_path = out_dir / "qc.json", out_dir / "qc.html"
    json_path.write_text(json.dumps(report, indent=2))
    html_path.write_text(render_html(report))
    return {**report, "json": str(json_path), "html": str(html_path)}


def _routing_html(routing: list[dict] | None) -> list[str]:
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
    header = ("<tr><th>shot</th><th>character</th><th>frames</th><th>face</th><th>rule</th>"
              "<th>why</th><th>evidence per face</th></tr>")

    def row(shot: int, d: dict) -> str:
        cells = [shot, d["character"], f"{d['first']}–{d['end'] - 1}",
                 "left alone" if d["track"] is None else d["track"], d["rule"], d["reason"],
                 "; ".join(d["evidence"]) or "–"]
        return "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>"

    if alone:
        out += ["<table>", header, *(row(s, d) for s, d in alone), "</table>"]
    for shot in routing:
        out.append(f"<h3>Shot {shot['shot']} (frames {shot['start']}–{shot['end'] - 1})</h3>")
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


def render_html(report: dict) -> str:
    """A self-contained page (images by relative name) listing flagged shots first."""
    esc = html.escape
    sync = report.get("sync_model")
    loud = report.get("loudness") or {}
    head = [
        f"<h1>QC: {esc(Path(report['output']).name)}</h1>",
        f"<p>{report['shots_flagged']} of {len(report['shots'])} shots flagged, "
        f"{report['segments_flagged']} segments.</p>",
        "<p>Sync measured with " + (esc(f"{sync['kind']} ({sync['weights']})") if sync
                                    else "nothing: <b>not measured</b> (no sync model given)")
        + "</p>",
        "<p>Loudness: " + (f"{_fmt(loud.get('integrated_lufs'))} LUFS integrated, sample peak "
                           f"{_fmt(loud.get('sample_peak_dbfs'))} dBFS" if loud.get("measured")
                           else "not measured (" + esc(str(loud.get("reason", ""))) + ")")
        + "</p>",
    ]
    mix = report.get("stem_mix")
    if mix:
        head.append("<p>Stems summed: " + (
            f"<b>{mix['clipped_samples']} samples clipped</b> (peak {mix['peak']:.2f} x full "
            "scale); deliver a mastered mix (output.audio)" if mix["clipped_samples"]
            else f"no clipping (peak {mix['peak']:.2f} x full scale)") + "</p>")
    for key, label in (("consent", "Rights / consent"), ("provenance", "Provenance")):
        if report.get(key):
            value = report[key]
            text = value if isinstance(value, str) else json.dumps(value)
            head.append(f"<p><b>{label}:</b> {esc(text)}</p>")
    body = []
    for shot in report["shots"]:
        state = "FLAGGED" if shot["flagged"] else "ok"
        body.append(f"<h2 class='{state.lower()}'>Shot {shot['shot']} (frames {shot['start']}"
                    f"–{shot['end'] - 1}): {state}</h2>")
        body.append("<table><tr><th>segment</th><th>character</th><th>frames</th>"
                    "<th>metric</th><th>LSE-D</th><th>LSE-C</th><th>offset (frames)</th>"
                    "<th>seam</th><th>flicker</th><th>flags</th></tr>")
        for seg in shot["segments"]:
            s = seg["sync"]
            cells = [seg["name"], seg["character"] or "", f"{seg['start']}–{seg['end'] - 1}",
                     s.get("metric", "not measured"), _fmt(s.get("lse_d")),
                     _fmt(s.get("lse_c")), _fmt(s.get("offset_frames")),
                     _fmt(seg["seam"]), _fmt(seg["flicker"]),
                     "; ".join(seg["flags"]) or "none"]
            body.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
        body.append("</table>")
        for key in ("contact_sheet", "sync_plot"):
            if shot.get(key):
                body.append(f"<p><img src='{esc(shot[key])}' alt='{key}'></p>")
    body += _routing_html(report.get("routing"))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
             "h2.flagged{color:#b00}h2.ok{color:#070}img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>QC "
            f"{esc(Path(report['output']).name)}</title><style>{style}</style></head><body>"
            + "\n".join(head + body) + "</body></html>\n")
