"""The work folder's cache: names made of everything an artefact depends on (issue 12, item 4).

Today's bug: the scan was kept under the threshold and ``bool(cut list)``, the tracks under the
shot's *index*: edit the cut list and stale tracks came back silently. Here an edited cut list,
another threshold or another detector names other files, an unchanged shot keeps its tracks, an
edited stem is decoded again (the old file left alone for whoever still maps it), and writers
never leave or clobber half-written files.
"""

from __future__ import annotations

import os
import subprocess
import threading

import numpy as np
import pytest
from filmmaker import make_film, write_stem

from lipdub.pipeline.partial_files import partial_name, remove_stale_partials, writing
from lipdub.pipeline.work_cache import cache_key

CLIPS = ["talkinghead_woman_flag__vretalk_face3.mp4",
         "talkinghead_woman_bluebg_30fps__vretalk_face4.mp4"]


def test_keys_and_atomic_writes(tmp_path):
    assert cache_key("a", 1, [2.0]) == cache_key("a", 1, [2.0]) != cache_key("a", 1, [2.5])
    target = tmp_path / "x.npz"
    with pytest.raises(RuntimeError), writing(target) as tmp:
        np.savez(tmp, a=np.ones(3))
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []  # nothing left, nothing half-written

    def write(value):
        with writing(target) as tmp:
            np.savez(tmp, a=np.full(200_000, value))

    threads = [threading.Thread(target=write, args=(v,)) for v in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with np.load(target) as data:  # one whole write won; no temporary is left
        assert len(set(data["a"].tolist())) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_a_killed_writers_partial_files_are_swept_and_no_one_elses(tmp_path):
    """What a SIGKILLed run left in the work folder goes at the next run's start; a live
    writer's, another machine's (it may live), finished files and foreign files stay."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        units = tmp_path / "units"
        units.mkdir()
        finished = units / "u0.npz"
        finished.write_bytes(b"done")
        tmp = partial_name(units / "u1.npz")  # a name as this machine's writers make it
        left = tmp.with_name(tmp.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
        writing_now = tmp.with_name(tmp.name.replace(f"-{os.getpid()}-", f"-{live.pid}-"))
        elsewhere = units / f".u2.partial-othermachine-{dead.pid}-abcdef.npz"
        foreign = units / ".u3.partial"
        for path in (left, writing_now, elsewhere, foreign):
            path.write_bytes(b"half")
        assert remove_stale_partials(tmp_path, recursive=True) == [left]
        assert sorted(p.name for p in units.iterdir()) == sorted(
            p.name for p in (finished, writing_now, elsewhere, foreign))
    finally:
        live.kill()


@pytest.fixture(scope="module")
def small_film(media_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cachefilm")
    film = make_film(folder / "film.mp4", [(media_dir / "video" / c, 60) for c in CLIPS],
                     size=(320, 180))
    return film


def _job(film, synthetic_generator, detector, **extra):
    from lipdub.pipeline.job import parse_job

    stem = film.path.parent / "anna.wav"
    if not stem.exists():
        write_stem(stem, [], film.frames / film.fps)
    return parse_job({"film": str(film.path), "stems": {"anna": str(stem)},
                      "output": {"path": str(film.path.parent / "out.mp4")},
                      "checkpoints": {"generator": str(synthetic_generator),
                                      "detector": str(detector)}, **extra})


def test_an_edited_cut_list_or_threshold_names_other_scans_and_tracks(
        small_film, synthetic_generator, detector_weights, weights_dir, tmp_path):
    from lipdub.pipeline.flows import scan_task, tracks_path
    from lipdub.pipeline.media.decode import probe_video

    info = probe_video(small_film.path)
    first = _job(small_film, synthetic_generator, detector_weights, shots=[1.6, 2.4])
    edited = _job(small_film, synthetic_generator, detector_weights, shots=[1.6, 3.2])
    scan_a = scan_task.fn(first, info, tmp_path)
    scan_b = scan_task.fn(edited, info, tmp_path)
    assert [s.start for s in scan_a.shots] == [0, 40, 60]
    assert [s.start for s in scan_b.shots] == [0, 40, 80]  # not the stale first scan
    assert len(list(tmp_path.glob("scan_*.npz"))) == 2
    # Shot 0 did not change: same tracks; shot 1 did: other tracks.
    assert tracks_path(first, scan_a, 0, tmp_path) == tracks_path(edited, scan_b, 0, tmp_path)
    assert tracks_path(first, scan_a, 1, tmp_path) != tracks_path(edited, scan_b, 1, tmp_path)
    # Detected cuts: the threshold is part of the name; another detector names other tracks.
    detected = [_job(small_film, synthetic_generator, detector_weights,
                     settings={"shot_threshold": t}) for t in (27.0, 40.0)]
    scans = [scan_task.fn(job, info, tmp_path) for job in detected]
    assert len(list(tmp_path.glob("scan_*.npz"))) == 4
    other = _job(small_film, synthetic_generator, weights_dir / "retinaface_mobilenet0.25.pth",
                 shots=[1.6, 2.4])
    assert tracks_path(other, scan_a, 0, tmp_path) != tracks_path(first, scan_a, 0, tmp_path)
    assert scans[0].times.tolist() == scan_a.times.tolist()


def test_an_edited_stem_is_decoded_again_and_the_old_one_left_alone(media_dir, tmp_path):
    from lipdub.pipeline.stems import stem_analysis

    stem = write_stem(tmp_path / "anna.wav", [(0.5, media_dir / "audio" /
                                                "en_vctk_p240__rtvc.mp3", 2.0)], 4.0)
    work = tmp_path / "work"
    first = stem_analysis("anna", stem, work)
    again = stem_analysis("anna", stem, work)  # from the cache
    assert again.samples_path == first.samples_path
    np.testing.assert_array_equal(again.envelope, first.envelope)
    before = first.samples_path.read_bytes()
    write_stem(stem, [(1.5, media_dir / "audio" / "en_vctk_p240__rtvc.mp3", 2.0)], 4.0)
    edited = stem_analysis("anna", stem, work)
    assert edited.samples_path != first.samples_path
    assert first.samples_path.read_bytes() == before  # never rewritten in place
    assert edited.segments[0].start > first.segments[0].start + 0.5
