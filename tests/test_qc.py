"""QC: sync figures from the parity-tested LSE code, seams and flicker, the report files, the
``lipdub qc`` command, loudness, and the QC step of a film run."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from filmmaker import write_stem
from lse_reference import lse_by_definition, syncnet_python_crop
from mastering_media import (
    BOX,
    TALKING_HEAD,
    encode_clip,
    fake_unit,
    film_of,
    write_pcm24,
)

from lipdub.pipeline.assemble import assemble_film
from lipdub.pipeline.audio import read_pcm16_mono_16k
from lipdub.pipeline.lse_metric import mfcc
from lipdub.pipeline.lse_segment import load_sync_model
from lipdub.pipeline.qc.checks import QCSegment, QCSettings, measure_loudness, run_qc

FRAMES = 24


@pytest.fixture(scope="module")
def dubbed(media_dir, tmp_path_factory):
    """An 8-bit FFV1 source of the talking head, and a copy with a made-up mouth in 4..20."""
    folder = tmp_path_factory.mktemp("qc")
    source = encode_clip(folder / "src.mkv", media_dir / "video" / TALKING_HEAD, FRAMES, "ffv1",
                         "yuv420p", options={"g": "1"})
    write_pcm24(folder / "mix.wav", FRAMES / 25 + 0.3)
    info, scan = film_of(source, cuts=[12])
    unit = fake_unit(folder / "unit.npz", range(4, 20), flicker=True)
    out = folder / "dub.mkv"
    assemble_film(info, scan, [(4, 20, unit)], out, audio=folder / "mix.wav", codec="ffv1")
    segments = [QCSegment("anna_a", 0, 4, 12, {f: BOX for f in range(4, 12)}, "anna"),
                QCSegment("anna_b", 1, 12, 20, {f: BOX for f in range(12, 20)}, "anna")]
    shots = [(0, 0, 12), (1, 12, FRAMES)]
    return folder, source, out, segments, shots


@pytest.fixture(scope="module")
def lse_weights(make_weights, parity_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("lse") / "syncnet_v2_synthetic.pth"
    torch.save(make_weights.build_state_dict(str(parity_dir.parent / "syncnet_eval.keys"), 7),
               path)
    return path


def test_qc_sync_figures_are_the_parity_tested_lse(dubbed, lse_weights):
    folder, source, out, segments, shots = dubbed
    report = run_qc(out, out, segments, shots, folder / "qc_lse", source=source,
                    lse=str(lse_weights), header={"consent": "actors agreed, 2024-05-01"})
    seg = report["shots"][0]["segments"][0] if report["shots"][0]["shot"] == 0 else \
        report["shots"][1]["segments"][0]
    assert seg["name"] == "anna_a" and seg["sync"]["metric"] == "syncnet_v2"
    # The same figures computed from their definitions (spec §7.2, §7.3, §7.5; lse_reference.py),
    # not with lipdub.pipeline.lse_metric's scoring: syncnet_python's crop, the network's two
    # halves on each 5-picture window and its 20 MFCC columns, the offset search in numpy.
    # A picture or an audio frame too early or late changes LSE-D by > 0.04 (tried) and the
    # offset from 2 to 15.
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)][4:12]
    model = load_sync_model(str(lse_weights), None).model
    pcm = read_pcm16_mono_16k(out)[int(4 / 25 * 16000):]
    pcm = pcm[: int((8 / 25 + 0.25) * 16000)]
    want = lse_by_definition(model, [syncnet_python_crop(f, BOX) for f in frames], mfcc(pcm))
    assert seg["sync"]["lse_d"] == pytest.approx(want["lse_d"], abs=1e-3)
    assert seg["sync"]["lse_c"] == pytest.approx(want["lse_c"], abs=1e-3)
    assert seg["sync"]["offset_frames"] == want["offset"]
    # 8 pictures give 3 windows (spec §7.2: min(8, 56 MFCC columns // 4) - 5), at the first
    # three pictures.
    assert want["windows"] == 3 and seg["sync"]["conf_times"] == pytest.approx([0.16, 0.20, 0.24])
    assert seg["sync"]["conf"] == pytest.approx(want["conf"], abs=1e-3)
    # Synthetic weights judge nothing real: low confidence is flagged, so every shot is.
    assert report["shots_flagged"] == 2
    qc_dir = folder / "qc_lse"
    for name in ("qc.html", "qc.json", "shot0000_sheet.png", "shot0000_sync.png",
                 "shot0001_sheet.png", "shot0001_sync.png"):
        assert (qc_dir / name).stat().st_size > 0, name
    page = (qc_dir / "qc.html").read_text()
    assert "actors agreed, 2024-05-01" in page and "syncnet_v2" in page
    assert json.loads((qc_dir / "qc.json").read_text())["consent"] == "actors agreed, 2024-05-01"


def test_seam_and_flicker_are_relative_to_the_source(dubbed, expert_weights):
    folder, source, out, segments, shots = dubbed
    same = run_qc(source, folder / "mix.wav", segments, shots, folder / "qc_same", source=source,
                  loudness=False)
    for shot in same["shots"]:
        for seg in shot["segments"]:
            assert seg["seam"] == 0 and seg["flicker"] == 0
            assert seg["sync"] == {"measured": False,
                                   "reason": "no sync model given (syncnet_v2 or expert)"}
            assert seg["flags"] == []
    assert same["shots_flagged"] == 0
    changed = run_qc(out, folder / "mix.wav", segments, shots, folder / "qc_expert",
                     source=source, expert=str(expert_weights), loudness=False)
    segs = [s for shot in changed["shots"] for s in shot["segments"]]
    assert all(s["flicker"] > 3 for s in segs)  # a noisy made-up mouth flickers
    assert any("flicker" in f for s in segs for f in s["flags"])
    assert all(s["sync"]["metric"] == "expert" for s in segs)
    assert changed["sync_model"]["kind"] == "expert"


def test_without_the_source_untouched_footage_passes_and_a_composite_is_still_seen(dubbed):
    # Seam and flicker are judged against the same face's untouched frames beside a segment:
    # a face's own edges and motion never flag it.
    folder, source, out, segments, shots = dubbed
    same = run_qc(source, folder / "mix.wav", segments, shots, folder / "qc_nosrc_same",
                  loudness=False)
    segs = [s for shot in same["shots"] for s in shot["segments"]]
    assert [s["relative_to"] for s in segs] == ["untouched frames beside"] * 2
    assert all(abs(s["seam"]) < 1.0 for s in segs), segs
    assert same["shots_flagged"] == 0 and not same["audio_silent"]
    changed = run_qc(out, folder / "mix.wav", segments, shots, folder / "qc_nosrc",
                     loudness=False)
    segs = [s for shot in changed["shots"] for s in shot["segments"]]
    assert any(any("mouth flicker" in f for f in s["flags"]) for s in segs), segs
    # A segment that fills its shot has nothing untouched beside it: reported, not judged.
    whole = [QCSegment("anna", 0, 0, 12, {f: BOX for f in range(12)}, "anna")]
    alone = run_qc(out, folder / "mix.wav", whole, [(0, 0, 12)], folder / "qc_alone",
                   loudness=False)
    [seg] = alone["shots"][0]["segments"]
    assert seg["relative_to"] == "nothing"
    # Past both limits (the made-up mouth flickers, its edge shows): only "not judged" keeps
    # them unflagged.
    limits = QCSettings()
    assert seg["flicker"] > limits.max_flicker and seg["seam"] > limits.max_seam, seg
    assert seg["flags"] == [] and alone["shots_flagged"] == 0
    html = (folder / "qc_alone" / "qc.html").read_text()
    assert "not judged: no source, no untouched frames beside" in html


def test_digital_silence_in_the_mix_or_a_routed_stem_is_flagged(dubbed, tmp_path):
    folder, source, out, segments, shots = dubbed
    seconds = FRAMES / 25 + 0.3
    silent = tmp_path / "silent.wav"
    write_stem(silent, [], seconds)
    quiet = run_qc(source, silent, segments, shots, tmp_path / "qc_silent", loudness=False)
    assert quiet["audio_silent"] is True
    assert all("digital silence in the delivered audio (every sample zero)" in s["flags"]
               for shot in quiet["shots"] for s in shot["segments"])
    # The mix sounds, but anna's own stem is silent where she is routed.
    stem = run_qc(source, folder / "mix.wav", segments, shots, tmp_path / "qc_stem",
                  loudness=False, stems={"anna": silent})
    flags = [s["flags"] for shot in stem["shots"] for s in shot["segments"]]
    assert flags == [["digital silence in the anna's stem (every sample zero)"]] * 2
    assert stem["audio_silent"] is False


def test_a_refused_input_leaves_no_report_folder(dubbed, tmp_path):
    from lipdub.pipeline.errors import MediaError

    folder, source, out, segments, shots = dubbed
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"not a picture " * 100)
    with pytest.raises(MediaError):
        run_qc(broken, folder / "mix.wav", segments, shots, tmp_path / "qc_broken",
               loudness=False)
    assert not (tmp_path / "qc_broken").exists()


def test_lipdub_qc_command_on_a_run_summary(dubbed, capsys):
    from lipdub.cli.main import main

    folder, source, out, segments, shots = dubbed
    summary = folder / "sync.json"
    summary.write_text(json.dumps({"frames": FRAMES,
                                   "face_boxes": [[f, *BOX] for f in range(4, 20)]}))
    code = main(["qc", str(out), str(folder / "mix.wav"), "--summary", str(summary),
                 "--source", str(source), "-o", str(folder / "qc_cli"), "--no-loudness"])
    assert code == 0
    assert "of 1 shots flagged; report:" in capsys.readouterr().out
    report = json.loads((folder / "qc_cli" / "qc.json").read_text())
    assert [s["name"] for s in report["shots"][0]["segments"]] == ["shot0000_4-20"]
    assert main(["qc", str(folder / "missing.mkv"), str(folder / "mix.wav")]) == 2
    assert "missing.mkv: file not found" in capsys.readouterr().err


def _stereo_wav(path, samples: np.ndarray, rate: int) -> None:
    """(2, n) float samples as a 24-bit WAV (the delivery format of a mix)."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s24le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame) + stream.encode(None):
            out.mux(packet)


def test_loudness_matches_the_standard_and_pyloudnorm(media_dir, tmp_path):
    import pyloudnorm

    from lipdub.pipeline.audio import read_audio

    # BS.1770: a 997 Hz sine of amplitude A in both front channels reads 20 log10(A) LUFS
    # (the -0.691 constant cancels the K filter's gain at 1 kHz).
    rate = 48000
    t = np.arange(12 * rate) / rate
    sine = 0.1 * np.sin(2 * np.pi * 997 * t)
    _stereo_wav(tmp_path / "sine.wav", np.stack([sine, sine]), rate)
    result = measure_loudness(tmp_path / "sine.wav")
    assert result["integrated_lufs"] == pytest.approx(-20.0, abs=0.05)
    assert result["sample_peak_dbfs"] == pytest.approx(-20.0, abs=0.01)
    # Speech with pauses (the gates matter), 44.1 kHz, two different channels: the streamed
    # measure equals pyloudnorm's whole-array one.
    speech = read_audio(media_dir / "audio" / "speech_44k_stereo__vretalk_audio1.wav",
                        sample_rate=None).samples
    pair = np.stack([speech, 0.5 * np.roll(speech, 4410)])
    _stereo_wav(tmp_path / "speech.wav", pair, 44100)
    from lipdub.pipeline.stems import iter_audio_blocks

    decoded = np.concatenate(list(iter_audio_blocks(tmp_path / "speech.wav", None, mono=False)),
                             axis=1)
    expected = pyloudnorm.Meter(44100).integrated_loudness(decoded.T.astype(np.float64))
    got = measure_loudness(tmp_path / "speech.wav")["integrated_lufs"]
    assert got == pytest.approx(expected, abs=0.01)
    assert got < -20.0  # quieter than the sine; not a constant


def test_film_run_delivers_prores_with_timecode_otio_and_qc(
        media_dir, synthetic_generator, detector_weights, expert_weights, prefect_server,
        tmp_path):
    """A whole `dub_film` run into ProRes: timecode and provenance on the output, the OTIO
    timeline, and the QC report with the consent note."""
    import opentimelineio as otio
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film
    from lipdub.pipeline.media.timecode import read_timecode

    clip = media_dir / "video" / TALKING_HEAD
    film = encode_clip(tmp_path / "film.mov", clip, 30, "prores_ks", "yuv422p10le",
                       options={"profile": "hq"}, timecode="10:00:00:00", rate=Fraction(25))
    stem = write_stem(tmp_path / "anna.wav", [(0.0, clip, 1.2)], 1.2)
    out = tmp_path / "film_dub.mov"
    job = {"film": str(film), "stems": {"anna": str(stem)},
           "output": {"path": str(out), "codec": "prores_hq"},
           "checkpoints": {"generator": str(synthetic_generator),
                           "detector": str(detector_weights), "expert": str(expert_weights)},
           "overrides": [{"character": "anna", "face": {"index": 0}}],
           "settings": {"batch_size": 8},
           "work_dir": str(tmp_path / "cache"), "consent": "test footage, internal only"}
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        summary = dub_film(job)
    assert summary["frames_changed"] > 0
    assert summary["profile"] == "prores_hq" and summary["pix_fmt"] == "yuv422p10le"
    assert summary["packets_copied"] + summary["frames_encoded"] == 30
    assert summary["timecode"]["timecode"] == "10:00:00:00"
    assert read_timecode(out).text == "10:00:00:00"
    assert summary["provenance"]["lipdub_altered"] == "lip-sync"
    timeline = otio.adapters.read_from_file(summary["otio"])
    dubbed_clips = list(timeline.tracks[1].find_clips())
    assert dubbed_clips and dubbed_clips[0].source_range.start_time.to_timecode(25) \
        .startswith("10:00:00:")
    meta = dubbed_clips[0].metadata["lipdub"]  # one vocabulary: half-open, faces by place
    assert meta["end_frame"] > meta["first_frame"] and meta["face"].startswith("face 1 of ")
    assert timeline.metadata["lipdub"]["frames"].startswith("frames: [first, end)")
    qc = json.loads(open(summary["qc"]["json"]).read())
    assert qc["consent"] == "test footage, internal only"
    assert qc["sync_model"]["kind"] == "expert"
    assert qc["shots"] and all(s["segments"] for s in qc["shots"])


def test_the_verdict_lists_each_flagged_segment_with_timecodes(dubbed, expert_weights):
    from lipdub.pipeline.media.timecode import parse_timecode
    from lipdub.pipeline.qc.verdict import flagged_rows, verdict_name

    folder, source, out, segments, shots = dubbed
    report = run_qc(out, folder / "mix.wav", segments, shots, folder / "qc_verdict",
                    source=source, expert=str(expert_weights), loudness=False)
    flagged = [s for shot in report["shots"] for s in shot["segments"] if s["flags"]]
    assert flagged, "a made-up mouth judged by untrained weights must be flagged"
    rows = flagged_rows(report, 25, parse_timecode("01:00:00:00", 25))
    assert [(r["segment"], r["first frame"], r["end frame"]) for r in rows] == [
        (s["name"], s["start"], s["end"]) for s in flagged]
    # Segment anna_a holds frames 4..12 (end exclusive): 25 fps from 01:00:00:00.
    first = next(r for r in rows if r["first frame"] == 4)
    assert (first["timecode in"], first["timecode out"]) == ("01:00:00:04", "01:00:00:11")
    assert (first["character"], first["shot"]) == ("anna", 0)
    assert first["reason"] == "; ".join(flagged[rows.index(first)]["flags"])
    assert flagged_rows(report, 25)[0]["timecode in"].startswith("00:00:00:")  # no source TC
    assert verdict_name(2, 14) == "QC: 2 of 14 shots flagged"
    assert verdict_name(0, 14) is None
