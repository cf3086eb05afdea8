"""``lipdub sync`` from the command line: A/V alignment per container, and bad inputs."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import process_table
import pytest

from lipdub.cli.main import main

VFR = "video/talkinghead_man_suit_VFR__vretalk_face1.mp4"  # first picture at 0.033 s
BURSTS = (0.5, 1.5, 2.5)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with av.open(str(path), "w") as f:
        stream = f.add_stream("pcm_s16le", rate=rate, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            f.mux(packet)
        f.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def burst_dub(tmp_path_factory) -> Path:
    """Silence with three sharp noise bursts at known times (48 kHz mono, 3 s)."""
    rate = 48000
    samples = np.zeros(3 * rate)
    rng = np.random.default_rng(0)
    for t in BURSTS:
        start = int(t * rate)
        samples[start : start + 2400] = rng.uniform(-0.6, 0.6, 2400)
    return write_wav(tmp_path_factory.mktemp("dub") / "bursts.wav", samples, rate)


def sync_args(media_dir, video, audio, out, checkpoint, detector, *extra) -> list[str]:
    return ["sync", str(video), str(audio), "-o", str(out), "--checkpoint", str(checkpoint),
            "--detector", str(detector), "--no-progress", *extra]


def onsets(path: Path) -> tuple[float, list[float]]:
    """First picture time, and the times where each burst starts in the output's audio."""
    with av.open(str(path)) as c:
        first_picture = float(next(c.decode(video=0)).time)
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    rate = frames[0].sample_rate
    start = float(frames[0].pts * frames[0].time_base)
    to_float = av.AudioResampler(format="fltp")  # FLAC decodes to integers, AAC to floats
    samples = np.concatenate(
        [g.to_ndarray().mean(axis=0) for f in frames for g in to_float.resample(f)]
    )
    loud = np.abs(samples) > 0.1
    found = []
    for burst in BURSTS:
        lo = int((burst - 0.3 + first_picture - start) * rate)
        found.append(start + (lo + int(np.argmax(loud[lo:]))) / rate)
    return first_picture, found


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_audio_stays_aligned_with_the_first_picture(
    suffix, media_dir, tmp_path, synthetic_generator, detector_weights, burst_dub, capsys
):
    out = tmp_path / f"aligned{suffix}"
    args = sync_args(media_dir, media_dir / VFR, burst_dub, out, synthetic_generator,
                     detector_weights, "--box", "200,150,500,520")
    assert main(args) == 0
    first_picture, found = onsets(out)
    assert first_picture == pytest.approx(0.0333, abs=1e-3)
    for burst, at in zip(BURSTS, found):
        # An encoder priming left in (a 21-44 ms shift) or a start at 0 instead of the first
        # picture (33 ms) would fail this.
        assert at - first_picture == pytest.approx(burst, abs=0.004), (suffix, burst, at)


def test_long_dub_is_cut_and_reported(media_dir, tmp_path, synthetic_generator,
                                      detector_weights, capsys):
    out = tmp_path / "cut.mkv"
    dub = media_dir / "audio/en_ljspeech_LJ001-0001__coqui.wav"  # 9.66 s on a 6.1 s clip
    assert main(sync_args(media_dir, media_dir / VFR, dub, out, synthetic_generator,
                          detector_weights, "--box", "200,150,500,520")) == 0
    report = capsys.readouterr().out
    assert '"audio_cut_s": 3.' in report
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        frames = list(c.decode(audio))
        seconds = sum(f.samples for f in frames) / frames[0].sample_rate
    assert seconds == pytest.approx(135 / (135 / 6.11), abs=0.1)


def html_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "wav2lip_gan.pth"
    path.write_text("<!DOCTYPE html><html><body>This link has expired</body></html>")
    return path


def truncated_mp4(media_dir: Path, tmp_path: Path) -> Path:
    data = (media_dir / "video/talkinghead_woman_flag__vretalk_face3.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 3])
    return path


def empty_wav(media_dir: Path, tmp_path: Path) -> Path:
    """A valid WAV header with no samples."""
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return path


CASES = {
    "missing video": (lambda m, t: t / "nope.mp4", None, None, "not found"),
    "not media": (lambda m, t: (t / "notes.mp4").write_text("hello\n" * 100) and t / "notes.mp4",
                  None, None, "not a readable media file"),
    "no video stream": (lambda m, t: m / "audio/speech_48k_stereo__vretalk_audio2.wav", None,
                        None, "no video stream"),
    "truncated mp4": (truncated_mp4, None, None, "truncated"),
    "empty audio": (None, empty_wav, None, "no samples"),
    "zero-byte audio": (None, lambda m, t: (t / "zero.wav").write_bytes(b"") or t / "zero.wav",
                        None, "empty"),
    "html checkpoint": (None, None, lambda m, t: html_checkpoint(t), "HTML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_leaves_nothing(
    case, media_dir, tmp_path, synthetic_generator, detector_weights, capsys
):
    make_video, make_audio, make_ckpt, message = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    video = make_video(media_dir, work) if make_video else media_dir / VFR
    default_audio = media_dir / "audio/en_vctk_p240__rtvc.mp3"
    audio = make_audio(media_dir, work) if make_audio else default_audio
    ckpt = make_ckpt(media_dir, work) if make_ckpt else synthetic_generator
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = sorted(p.name for p in work.iterdir()) if work.exists() else []
    rc = main(sync_args(media_dir, video, audio, out_dir / "out.mp4", ckpt, detector_weights))
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("lipdub: error:") and "\n" not in err, err
    assert message.lower() in err.lower(), err
    assert list(out_dir.iterdir()) == []  # no output, no partial file, no summary
    assert sorted(p.name for p in work.iterdir()) == before  # inputs untouched


def test_an_odd_sized_still_is_padded_for_h264_and_said(media_dir, tmp_path, burst_dub,
                                                        synthetic_generator, detector_weights,
                                                        capsys):
    """4:2:0 cannot hold 910x1137: the review copy is 910x1138, its last row repeated, and the
    user is told (stderr and summary). FFV1 keeps the exact size: test_sync_clip."""
    still = media_dir / "images/one_face_frontal__facerec_obama.jpg"
    out = tmp_path / "still.mp4"
    assert main(sync_args(media_dir, still, burst_dub, out, synthetic_generator,
                          detector_weights)) == 0
    err = capsys.readouterr().err
    assert "warning: the picture is 910x1137" in err and "910x1138" in err, err
    assert "910x1138" in json.loads(Path(f"{out}.json").read_text())["size_note"]
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.format.name) == (910, 1138, "yuv420p")
        luma = frame.to_ndarray()[:1138].astype(float)  # the Y plane of yuv420p
    edge = np.abs(luma[-1] - luma[-2]).mean()  # the repeated row, through H.264
    inside = np.abs(np.diff(luma[:-2], axis=0)).mean(axis=1)
    assert edge < 1.5 and edge < np.median(inside), (edge, np.median(inside))


def test_inputs_are_never_overwritten(media_dir, tmp_path, synthetic_generator,
                                      detector_weights, capsys):
    video = tmp_path / "clip.mp4"
    shutil.copy(media_dir / VFR, video)
    before = video.read_bytes()
    rc = main(sync_args(media_dir, video, media_dir / "audio/en_vctk_p240__rtvc.mp3", video,
                        synthetic_generator, detector_weights))
    assert rc == 2 and "overwrite an input" in capsys.readouterr().err
    assert video.read_bytes() == before


def lipdub_command() -> list[str]:
    """The installed console script (or the module when the package is not installed)."""
    script = Path(sys.executable).parent / "lipdub"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lipdub.cli"]


def test_console_script_decodes_the_dub_in_a_child_process(media_dir, tmp_path,
                                                           synthetic_generator,
                                                           detector_weights):
    """The real `lipdub` process: the dub's mel comes from a forked child (torch not imported
    yet), the process leaves at once when done, and a child's error is one clear line."""
    still = media_dir / "images" / "one_face_frontal__facerec_obama.jpg"
    dub = media_dir / "audio" / "en_ljspeech_LJ001-0001__coqui.wav"
    out = tmp_path / "still.mkv"
    args = sync_args(media_dir, still, dub, out, synthetic_generator, detector_weights)
    done = subprocess.run(lipdub_command() + args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with wave.open(str(dub)) as w:
        seconds = w.getnframes() / w.getframerate()
    summary = json.loads(Path(str(out) + ".json").read_text())
    # A still lasts as long as the dub: the child's duration decides the frame count.
    assert summary["frames"] == math.ceil(seconds * 25) == summary["frames_synced"]
    report = json.loads(done.stdout)
    assert report["output"] == str(out) and report["dub_mel_taken_in"] == "child process"

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a sound file")
    args = sync_args(media_dir, still, not_audio, tmp_path / "bad.mkv", synthetic_generator,
                     detector_weights)
    failed = subprocess.run(lipdub_command() + args, capture_output=True, text=True, timeout=300)
    err = failed.stderr.strip()
    assert failed.returncode == 2 and err.startswith("lipdub: error:") and "\n" not in err, err
    assert str(not_audio) in err
    assert not (tmp_path / "bad.mkv").exists()


def in_fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (no torch imported: a child can be forked); stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dub_child_process_keeps_the_mel_imports_out_of_the_main_process(media_dir, tmp_path):
    from lipdub.pipeline.audio import dub_mel

    dub = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    probe = (
        "import json, os, sys\n"
        "import numpy as np\n"
        "from lipdub.pipeline.dub_process import DubInChildProcess\n"
        f"with DubInChildProcess({str(dub)!r}) as child:\n"
        "    result = child.future.result()\n"
        "    pid = child.pid\n"
        f"np.save({str(tmp_path / 'mel.npy')!r}, result.mel)\n"
        "heavy = ('scipy.signal', 'librosa.core.spectrum', 'numba')\n"
        "print(json.dumps({'heavy': [m for m in heavy if m in sys.modules],\n"
        "                  'duration': result.duration,\n"
        "                  'other_process': pid != os.getpid()}))\n"
    )
    report = json.loads(in_fresh_python(probe))
    # librosa's own import is lazy; what its STFT and mel filters pull in stays in the child.
    assert report == {"heavy": [], "duration": pytest.approx(dub_mel(dub).duration),
                      "other_process": True}
    np.testing.assert_array_equal(np.load(tmp_path / "mel.npy"), dub_mel(dub).mel)


def test_a_dub_child_that_dies_is_a_clear_error(media_dir):
    dub = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    probe = (
        "import os, signal\n"
        "from lipdub.pipeline.dub_process import DubInChildProcess\n"
        f"with DubInChildProcess({str(dub)!r}) as child:\n"
        "    os.kill(child.pid, signal.SIGKILL)\n"
        "    error = child.future.exception(timeout=60)\n"
        "print(type(error).__name__, error)\n"
    )
    said = in_fresh_python(probe)
    assert said.startswith("LipdubError") and "stopped unexpectedly" in said and str(dub) in said


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (gone, or a zombie waiting to be reaped, is not alive)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_dub_child_is_reaped_when_its_mel_arrives(media_dir):
    dub = media_dir / "audio" / "en_vctk_p240__rtvc.mp3"
    probe = (
        "import os, time\n"
        "from lipdub.pipeline.dub_process import DubInChildProcess\n"
        f"with DubInChildProcess({str(dub)!r}) as child:\n"
        "    child.future.result()\n"
        "    deadline = time.time() + 5\n"
        "    while os.path.exists(f'/proc/{child.pid}') and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    print(os.path.exists(f'/proc/{child.pid}'))\n"
    )
    assert in_fresh_python(probe).strip() == "False"  # not a zombie until the run ends


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_dub_child_dies_with_its_parent_even_on_sigkill(media_dir):
    import time

    # A minute of speech: the child is still at work, or sending a mel far bigger than a pipe
    # holds, when its parent is killed.
    dub = media_dir / "audio" / "speech_44k_stereo__vretalk_audio1.wav"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from lipdub.pipeline.dub_process import DubInChildProcess\n"
        f"child = DubInChildProcess({str(dub)!r})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.time() + 10
        while _alive(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the dub child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def render_in_background(media_dir, out: Path, checkpoint, detector):
    """`lipdub sync` of a 5 s clip into ``out`` as its own process, returned once it writes
    (its hidden partial output exists); and its arguments."""
    clip = media_dir / "video" / "talkinghead_woman_flag__vretalk_face3.mp4"
    dub = media_dir / "audio" / "en_ljspeech_LJ001-0001__coqui.wav"
    out.parent.mkdir()
    args = sync_args(media_dir, clip, dub, out, checkpoint, detector)
    proc = subprocess.Popen(lipdub_command() + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.parent.glob(".*partial*")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, args


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_render_stops_sync_and_leaves_nothing(media_dir, tmp_path, signum,
                                                           synthetic_generator,
                                                           detector_weights):
    """A farm's stop (SIGTERM), a closed terminal (SIGHUP) or Ctrl-C while `lipdub sync`
    writes: out within 5 s, status 128 + the signal, one line, no output or hidden partial
    file, no child left."""
    out = tmp_path / "out" / "clip.mkv"
    proc, _ = render_in_background(media_dir, out, synthetic_generator, detector_weights)
    time.sleep(0.5)
    err = process_table.stop_when(proc, lambda: True, signum)
    assert err.strip() == f"lipdub: stopped by {signal.Signals(signum).name}", err
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_next_run_removes_what_a_killed_one_left(media_dir, tmp_path, synthetic_generator,
                                                     detector_weights):
    """SIGKILL leaves a hidden partial output (nothing can run at the kill); the next run to
    that folder removes it, and leaves a live writer's and another machine's alone."""
    out = tmp_path / "out" / "clip.mkv"
    proc, args = render_in_background(media_dir, out, synthetic_generator, detector_weights)
    proc.kill()
    proc.wait()
    left = list(out.parent.glob(".*partial*"))
    assert left and not out.exists()
    live = subprocess.Popen(["sleep", "60"])
    try:
        keep = [out.with_name(left[0].name.replace(f"-{proc.pid}-", f"-{live.pid}-")),
                out.with_name(".clip.partial-elsewhere-" + left[0].name.split("-", 2)[2])]
        for path in keep:
            path.write_bytes(b"someone else is writing this")
        assert main(args) == 0
    finally:
        live.kill()
    assert out.exists()
    assert sorted(p.name for p in out.parent.glob(".*partial*")) == sorted(p.name for p in keep)
