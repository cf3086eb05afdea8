"""`lipdub prepare`, `lipdub train` and `lipdub qc` stopped by a signal mid-work: out within
5 s with status 128 + the signal and one line, nothing half-written left, no child left
(DataLoader workers included). `sync` and `dub` have theirs in test_sync_cli.py and
test_film_flow.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import process_table
import pytest

from lipdub.training.synthetic import SyntheticOptions, build_synthetic_dataset

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def lipdub(*args: str) -> subprocess.Popen:
    script = Path(sys.executable).parent / "lipdub"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lipdub.cli"]
    return subprocess.Popen(command + list(args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_prepare_stopped_mid_video_leaves_no_half_video(media_dir, detector_weights, tmp_path):
    clip = media_dir / "video" / "talkinghead_woman_bluebg_30fps__vretalk_face4.mp4"
    out = tmp_path / "data"
    proc = lipdub("prepare", "videos", str(clip), str(out), "--detector", str(detector_weights),
                  "--device", "cpu", "--no-progress", "--val-fraction", "0")
    said = process_table.stop_when(proc, lambda: list(out.glob("*.partial/*.jpg")),
                                   signal.SIGTERM)
    assert said.strip() == "lipdub: stopped by SIGTERM", said  # one line
    assert not list(out.rglob("*.partial*")) and not (out / clip.stem).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_train_stopped_mid_run_keeps_whole_checkpoints_only(tmp_path, signum):
    data = tmp_path / "synthetic"
    build_synthetic_dataset(data, SyntheticOptions(train_identities=2, val_identities=1,
                                                   videos_per_identity=1, seconds=(1.2, 1.2),
                                                   seed=1))
    out = tmp_path / "expert"
    proc = lipdub("train", "expert", "--data", str(data), "--out", str(out),
                  "--width-divisor", "16", "--batch-size", "4", "--max-steps", "100000",
                  "--device", "cpu", "--set", "checkpoint_interval=1", "--set",
                  "eval_interval=100000", "--set", "data.num_workers=1", "--set", "threads=1")
    reached = lambda: (len(list(out.glob("checkpoint_step*.pth"))) >= 2  # noqa: E731
                       and process_table.children(proc.pid))  # the DataLoader worker runs
    said = process_table.stop_when(proc, reached, signum)
    assert said.strip().splitlines()[-1] == f"lipdub: stopped by {signal.Signals(signum).name}"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_qc_stopped_while_measuring_leaves_no_report_folder(media_dir, detector_weights,
                                                            tmp_path):
    clip = media_dir / "video" / "talkinghead_man_interview_offcamera_720p__ghost_obama_short.mp4"
    out = tmp_path / "qc"
    proc = lipdub("qc", str(clip), str(clip), "-o", str(out), "--detector", str(detector_weights),
                  "--no-loudness")
    # The report folder holds its scratch audio folder while the pictures are measured.
    said = process_table.stop_when(proc, lambda: list(out.glob(".qc_audio_*")), signal.SIGHUP)
    assert said.strip().splitlines()[-1] == "lipdub: stopped by SIGHUP", said
    assert not out.exists(), list(out.rglob("*"))
