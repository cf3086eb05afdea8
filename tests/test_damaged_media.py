"""Damaged media is refused, never silently shortened (issue 13, item 1: the refusal part).

A file cut short whose index survived (MP4 with the index in front) opens, and decodes to its
cut without an error: the container's own picture count is what tells. Cuts at 10 %, 50 % and
90 % of a real clip's bytes, through the decode every path uses, through the film scan and
through `lipdub sync`: one line naming the file and the last good frame, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from pipeline.errors import MediaError
from pipeline.media import iter_video_frames, probe_video

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
    from pipeline.cli import main
    from pipeline.film_scan import scan_film

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
