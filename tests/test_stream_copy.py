"""A run that edits no picture copies the video stream whole, whatever the codec (issue 13,
item 5): the output's coded pictures are the source's, byte for byte, with the dub audio."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from mastering_media import TALKING_HEAD, encode_clip, film_of, write_pcm24

from lipdub.pipeline.assemble import assemble_film
from lipdub.pipeline.media.stream_copy import CannotCopy, copy_video_stream


def packets(path: Path) -> list[tuple[bytes, int | None, bool]]:
    """(bytes, pts in seconds x 1e6, keyframe) of every coded picture of the first video
    stream (containers keep different time bases)."""
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        return [(bytes(p), None if p.pts is None else round(float(p.pts * p.time_base) * 1e6),
                 p.is_keyframe) for p in c.demux(video) if p.size]


def test_the_coded_pictures_are_copied_with_the_dub_audio(media_dir, tmp_path):
    source = media_dir / "video" / TALKING_HEAD  # H.264 with B-frames
    write_pcm24(tmp_path / "mix.wav", 5.2)
    for name in ("copy.mkv", "copy.mov", "copy.mp4"):
        out = tmp_path / name
        done = copy_video_stream(source, out, audio=tmp_path / "mix.wav", audio_start=0.0,
                                 duration=5.0, timecode="01:00:00:00")
        assert done.codec == "h264" and done.packets_copied == 125
        assert packets(out) == packets(source), name
        with av.open(str(out)) as c:
            samples = sum(f.samples for f in c.decode(audio=0))
            assert abs(samples / 48000 - 5.0) < 0.05, (name, samples)
        assert done.audio.cut_seconds == pytest.approx(0.2, abs=0.01)


def test_a_codec_the_container_cannot_hold_is_refused_and_nothing_left(media_dir, tmp_path):
    ffv1 = encode_clip(tmp_path / "src.mkv", media_dir / "video" / TALKING_HEAD, 5, "ffv1",
                       "yuv420p")
    with pytest.raises(CannotCopy, match=r"\.mov cannot hold ffv1"):
        copy_video_stream(ffv1, tmp_path / "out.mov", audio=None, audio_start=0.0,
                          duration=0.2)
    assert [p.name for p in tmp_path.iterdir()] == ["src.mkv"]


def test_a_film_nobody_speaks_in_is_copied_whatever_codec_the_job_asks(media_dir, tmp_path):
    source = media_dir / "video" / TALKING_HEAD
    info, scan = film_of(source)
    write_pcm24(tmp_path / "mix.wav", 5.0)
    out = tmp_path / "film_dub.mkv"
    done = assemble_film(info, scan, [], out, audio=tmp_path / "mix.wav", codec="ffv1")
    assert done.passthrough == "stream copied whole: no picture edited"
    assert (done.changed, done.frames_encoded, done.packets_copied) == (0, 0, 125)
    assert done.profile == "stream copy (h264)" and packets(out) == packets(source)
    # Into a container that cannot hold it, it is encoded as asked, and the summary says why.
    ffv1 = encode_clip(tmp_path / "src.mkv", source, 5, "ffv1", "yuv420p")
    info, scan = film_of(ffv1)
    done = assemble_film(info, scan, [], tmp_path / "review.mov", audio=None, codec="h264")
    assert done.passthrough.startswith("no picture edited, but no stream copy: .mov cannot "
                                       "hold ffv1")
    assert done.frames_encoded == 5


def test_lipdub_sync_without_a_face_copies_the_clip(synthetic_generator, media_dir, tmp_path,
                                                    capsys):
    from lipdub.cli.main import main

    faceless = tmp_path / "sky.mp4"  # an H.264 gradient: nothing the detector takes for a face
    with av.open(str(faceless), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"g": "10", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        ramp = np.linspace(0, 255, 160, dtype=np.uint8)
        for i in range(30):
            rgb = np.dstack([np.tile(np.roll(ramp, i), (96, 1))] * 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    result = tmp_path / "sky_dub.mkv"
    code = main(["sync", str(faceless), str(media_dir / "audio" / "en_vctk_p240__rtvc.mp3"),
                 "-o", str(result), "--checkpoint", str(synthetic_generator), "--codec", "ffv1",
                 "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(result.with_name(result.name + ".json").read_text())
    assert summary["passthrough"] == "stream copied whole: no face to sync"
    assert (summary["frames_synced"], summary["packets_copied"]) == (0, 30)
    assert packets(result) == packets(faceless)
