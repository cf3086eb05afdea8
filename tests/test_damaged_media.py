"""Damaged media is refused, never silently shortened or shown; accepted, it is listed.

A file cut short whose index survived (MP4 with the index in front) opens, and decodes to its
cut without an error: the container's own picture count is what tells. Bytes flipped inside
packets and a lost packet are what a decoder conceals: it is told to stop instead. Each case is
built here from a real clip, through the decode every path uses, the film scan and `lipdub
sync`: refused with one line naming the file and the last good frame, nothing written; or, with
the damage accepted, decoded to the end with every affected frame listed.
"""

from __future__ import annotations

import random
from pathlib import Path

import av
import pytest

from lipdub.pipeline.errors import MediaError
from lipdub.pipeline.media.decode import Damage, iter_video_frames, probe_video

FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"


@pytest.fixture(scope="module")
def indexed_first(media_dir, tmp_path_factory) -> Path:
    """The flag clip remuxed (packets copied) with its index at the front of the file."""
    out = tmp_path_factory.mktemp("damaged") / "flag_faststart.mp4"
    with av.open(str(media_dir / "video" / FLAG)) as src, \
            av.open(str(out), "w", options={"movflags": "faststart"}) as dst:
        video = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                dst.mux(packet)
    return out


def remux(source: Path, out: Path, *, flip: range = range(0), drop: int | None = None) -> list:
    """``source``'s pictures copied packet by packet into ``out``, with 20 bytes inverted in the
    back three quarters of each packet (decode order) in ``flip`` and packet ``drop`` left out;
    returns the presentation times (s) of the packets damaged or dropped."""
    rng = random.Random(1)
    hit = []
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        video = dst.add_stream_from_template(src.streams.video[0])
        packets = [p for p in src.demux(src.streams.video[0]) if p.size]
        for i, packet in enumerate(packets):
            if i == drop or i in flip:
                hit.append(float(packet.pts * packet.time_base))
            if i == drop:
                continue
            if i in flip:
                data = bytearray(bytes(packet))
                for _ in range(20):
                    data[rng.randrange(len(data) // 4, len(data))] ^= 0xFF
                damaged = av.Packet(bytes(data))
                damaged.pts, damaged.dts, damaged.time_base = (packet.pts, packet.dts,
                                                               packet.time_base)
                damaged.is_keyframe = packet.is_keyframe
                packet = damaged
            packet.stream = video
            dst.mux(packet)
    return hit


def decode_all(path: Path, **kwargs) -> list[float]:
    return [float(f.pts * f.time_base) for f in iter_video_frames(path, **kwargs)]


def cut(source: Path, share: float, folder: Path) -> Path:
    data = source.read_bytes()
    path = folder / f"cut_{int(share * 100)}.mp4"
    path.write_bytes(data[: int(len(data) * share)])
    return path


def test_the_whole_file_decodes(indexed_first):
    assert sum(1 for _ in iter_video_frames(indexed_first)) == 125


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_a_file_cut_short_is_refused_naming_the_last_good_frame(indexed_first, share, tmp_path):
    damaged = cut(indexed_first, share, tmp_path)
    assert probe_video(damaged).frame_count == 125  # the index still says 125
    decoded = 0
    with pytest.raises(MediaError, match=r"damaged: the file announces 125 pictures but only "
                                         r"\d+ could be decoded \(the last good one is frame") as e:
        for _ in iter_video_frames(damaged):
            decoded += 1
    assert str(damaged) in str(e.value) and f"only {decoded} could" in str(e.value)
    assert decoded < 125


def test_film_scan_and_lipdub_sync_refuse_it(indexed_first, media_dir, synthetic_generator,
                                             tmp_path, capsys):
    from lipdub.cli.main import main
    from lipdub.pipeline.film_scan import scan_film

    damaged = cut(indexed_first, 0.5, tmp_path)
    with pytest.raises(MediaError, match="damaged"):
        scan_film(probe_video(damaged), cut_times=[])
    out = tmp_path / "out.mp4"
    code = main(["sync", str(damaged), str(media_dir / "audio" / "en_vctk_p240__rtvc.mp3"),
                 "-o", str(out), "--checkpoint", str(synthetic_generator),
                 "--box", "150,150,430,440", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "damaged" in err and str(damaged) in err
    assert "Traceback" not in err
    assert not any(p.name.startswith((out.name, "." + out.name)) for p in tmp_path.iterdir())


def test_bytes_flipped_inside_packets_are_refused_not_concealed(media_dir, tmp_path):
    damaged = tmp_path / "flipped.mp4"
    hit = remux(media_dir / "video" / FLAG, damaged, flip=range(62, 65))
    assert probe_video(damaged).frame_count == 125
    decoded = 0
    with pytest.raises(MediaError, match=r"damaged: .* \(the last good one is frame") as e:
        for _ in iter_video_frames(damaged):
            decoded += 1
    assert str(damaged) in str(e.value) and "--accept-damaged" in str(e.value)
    assert decoded <= 62 + 4  # stopped at the damage (a few pictures of decoder delay)
    assert decoded >= min(sorted(decode_all(media_dir / "video" / FLAG)).index(t) for t in hit) - 4


def test_accepted_flipped_bytes_deliver_every_picture_and_list_the_concealed_ones(
        media_dir, tmp_path):
    source = media_dir / "video" / FLAG
    damaged = tmp_path / "flipped.mp4"
    hit = remux(source, damaged, flip=range(62, 65))
    found: list[Damage] = []
    times = decode_all(damaged, accept_damaged=True, damage=found)
    assert times == decode_all(source)  # nothing dropped
    assert found and all("concealed" in d.what for d in found)
    # What the decoder concealed lies in or after the damaged pictures (errors carry over to
    # the pictures predicted from them), never before.
    assert all(d.time >= min(hit) and times[d.frame] == d.time for d in found)


def test_a_lost_packet_is_refused_or_listed_as_a_missing_picture(media_dir, tmp_path):
    source = media_dir / "video" / FLAG
    damaged = tmp_path / "lost.mp4"
    with av.open(str(source)) as src:
        packets = [p for p in src.demux(src.streams.video[0]) if p.size]
        assert not packets[62].is_keyframe  # a picture others are predicted from
    [lost] = remux(source, damaged, drop=62)
    assert probe_video(damaged).frame_count == 124  # the index agrees: only the times tell
    with pytest.raises(MediaError, match="damaged"):
        decode_all(damaged)
    found: list[Damage] = []
    times = decode_all(damaged, accept_damaged=True, damage=found)
    expected = sorted(t for t in decode_all(source) if t != lost)
    assert times == expected
    missing = [d for d in found if "missing" in d.what]
    after = min(t for t in expected if t > lost)
    assert [(d.frame, d.time) for d in missing] == [(expected.index(after), after)]
    assert missing[0].what.startswith("1 picture(s) missing before it")


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_an_accepted_cut_lists_where_the_pictures_end(indexed_first, share, tmp_path):
    damaged = cut(indexed_first, share, tmp_path)
    found: list[Damage] = []
    times = decode_all(damaged, accept_damaged=True, damage=found)
    assert 0 < len(times) < 125
    assert [d.frame for d in found] == [len(times)]
    assert f"announces 125 pictures but only {len(times)} could be decoded" in found[0].what


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_a_cut_without_its_index_is_refused_even_when_damage_is_accepted(media_dir, share,
                                                                         tmp_path):
    source = tmp_path / "index_last.mp4"
    remux(media_dir / "video" / FLAG, source)  # PyAV writes the index at the end
    damaged = cut(source, share, tmp_path)
    with pytest.raises(MediaError, match="not a readable media file"):
        decode_all(damaged, accept_damaged=True)


def test_the_shared_clips_decode_whole_under_the_strict_decoder(media_dir):
    # The refusal never fires on sound files: every real clip we hold, with frame threads.
    for clip in sorted((media_dir / "video").glob("*.mp4")):
        assert len(decode_all(clip)) == probe_video(clip).frame_count, clip.name


def test_a_scan_kept_by_a_run_that_accepted_damage_is_refused_to_a_run_that_does_not(
        media_dir, tmp_path):
    from dataclasses import replace

    from lipdub.pipeline.film_stages import film_shots
    from lipdub.pipeline.job import parse_job

    damaged = tmp_path / "flipped.mp4"
    remux(media_dir / "video" / FLAG, damaged, flip=range(62, 65))
    stem = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    job = {"film": str(damaged), "stems": {"anna": str(stem)},
           "output": {"path": str(tmp_path / "out.mkv")},
           "checkpoints": {"generator": str(tmp_path / "g.pth")}}
    spec = parse_job(job)
    with pytest.raises(MediaError, match="damaged"):
        film_shots(spec, probe_video(damaged), tmp_path / "work")
    accepted = replace(probe_video(damaged), accept_damaged=True)
    scan = film_shots(spec, accepted, tmp_path / "work")
    assert scan.damage and len(scan.times) == 125
    again = film_shots(spec, accepted, tmp_path / "work")  # from the work folder
    assert again.damage == scan.damage
    with pytest.raises(MediaError, match=r"damaged: \d+ place\(s\), the first at frame"):
        film_shots(spec, probe_video(damaged), tmp_path / "work")


def test_lipdub_sync_with_accepted_damage_says_each_place_and_keeps_it_in_the_summary(
        media_dir, synthetic_generator, tmp_path, capsys):
    import json

    from lipdub.cli.main import main

    damaged = tmp_path / "flipped.mp4"
    remux(media_dir / "video" / FLAG, damaged, flip=range(62, 65))
    out = tmp_path / "out.mkv"
    code = main(["sync", str(damaged), str(media_dir / "audio" / "en_vctk_p240__rtvc.mp3"),
                 "-o", str(out), "--checkpoint", str(synthetic_generator), "--accept-damaged",
                 "--box", "150,150,430,440", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads(out.with_name(out.name + ".json").read_text())
    assert summary["frames"] == 125 and summary["damage"]
    for damage in summary["damage"]:
        assert f"warning: damaged input: frame {damage['frame']} " in err


def test_a_film_with_accepted_damage_is_dubbed_whole_with_the_damage_in_summary_and_qc(
        media_dir, synthetic_generator, detector_weights, prefect_server, tmp_path):
    import json

    from filmmaker import write_stem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lipdub.pipeline.flows import dub_film

    damaged = tmp_path / "flipped.mp4"
    remux(media_dir / "video" / FLAG, damaged, flip=range(62, 65))
    expected: list[Damage] = []
    decode_all(damaged, accept_damaged=True, damage=expected)  # what the decoder itself says
    speech = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    stem = write_stem(tmp_path / "anna.wav", [(0.5, speech, 3.0)], 5.0)
    out = tmp_path / "dub.mkv"
    job = {"film": str(damaged), "stems": {"anna": str(stem)},
           "output": {"path": str(out), "codec": "ffv1"},
           "checkpoints": {"generator": str(synthetic_generator),
                           "detector": str(detector_weights)},
           "work_dir": str(tmp_path / "work"), "settings": {"accept_damaged": True},
           "overrides": [{"character": "anna", "shot": 0, "face": {"index": 0}}]}
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        summary = dub_film(job)
    listed = [{"frame": d.frame, "time": d.time, "what": d.what} for d in expected]
    assert expected and summary["damage"] == listed
    assert summary["frames"] == 125 and summary["frames_changed"] > 0
    report = json.loads(Path(summary["qc"]["json"]).read_text())
    assert report["damage"] == listed
    html = Path(summary["qc"]["html"]).read_text()
    assert all(f"Damaged source</b>: frame {d.frame}" in html for d in expected)
    # Refused without the setting, before anything is written.
    out.unlink()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}), \
            pytest.raises(MediaError, match="damaged"):
        dub_film({**job, "settings": {}, "work_dir": str(tmp_path / "work2")})
    assert not out.exists()
