"""End-to-end parity: what lipdub feeds the generator, frame by frame, against the reference.

``../shared/fixtures/parity/e2e_reference_flag.npz`` holds one batch of the original
``inference.py`` at its model boundary (the flag clip, the vretalk speech, a fixed box, synthetic
weights of seed 1). Both entry points, ``lipdub sync`` and the film flow's unit renderer, run
their own stages on the same clip, audio and box; the generator's inputs and outputs are captured
at the network and compared: face input exact, mel windows within 1e-5, output within 1e-3 (the
fixture's float16 storage; lipdub's network is BatchNorm-folded, equal within fp32 rounding).

The frame-to-mel rule is also checked on its own against the reference's literal formula at the
common frame rates over long clips, and its clamp of the last window.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lipdub.pipeline.audio import frame_mel_starts, mel_columns

FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"
SPEECH = "speech_44k_stereo__vretalk_audio1.wav"
RATES = [24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60000 / 1001]


def _reference_start(i: int, fps: float) -> int:
    return int(i * (80.0 / fps))  # inference.py: start_idx = int(i * (80. / fps))


@pytest.mark.parametrize("fps", RATES)
def test_frame_to_mel_columns_are_the_references_at_constant_rates(fps):
    n = 200_000  # about two hours at 24 fps
    seconds = np.arange(n) / fps
    starts = frame_mel_starts(seconds, 10**9, fps)  # a dub longer than the picture: no clamp
    expected = np.array([_reference_start(i, fps) for i in range(n)], np.int64)
    np.testing.assert_array_equal(starts, expected)
    if fps == 24000 / 1001:  # where the literal expression and the timestamp rule part
        by_time = np.array([math.floor(i / fps * 80 + 1e-9) for i in range(n)])
        assert (by_time != expected).sum() > 100


def test_the_last_window_is_clamped_as_the_reference_does_then_silence():
    dub_columns = 402  # the fixture's dub: 5.0156 s
    starts = frame_mel_starts(np.arange(125) / 25.0, dub_columns, 25.0)
    assert starts[120] == 384  # int(120 * 3.2): still inside the dub
    assert starts[121] == dub_columns - 16  # the reference's final chunk, clamped
    assert list(starts[122:]) == [390, 393, 396]  # past the reference's end: lipdub's silence
    # Variable frame rate: timestamps decide, the same clamp applies.
    vfr = np.array([0.0, 0.04, 0.09, 0.13, 4.96, 5.01])
    assert list(frame_mel_starts(vfr, dub_columns, None)) == [0, 3, 7, 10, 386, 400]


@pytest.mark.parametrize("suffix", ["25", "30", "29_97", "23_976", "30000_1001", "24000_1001"])
def test_frame_to_mel_columns_match_the_reference_loop_recorded(parity_dir, suffix):
    """The reference's own chunk starts (audio_mel.npz), clamp included, frame for frame."""
    with np.load(parity_dir / "audio_mel.npz") as d:
        fps = float(d[f"fps_value_{suffix}"])
        for columns, expected in ((d["mel"].shape[1], d[f"chunk_starts_fps{suffix}"]),
                                  (int(d["long_T"]), d[f"long_chunk_starts_fps{suffix}"])):
            starts = frame_mel_starts(np.arange(len(expected)) / fps, int(columns), fps)
            np.testing.assert_array_equal(starts, expected)


@pytest.fixture(scope="module")
def reference(parity_dir):
    with np.load(parity_dir / "e2e_reference_flag.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def seed1_generator(make_weights, parity_dir, reference, tmp_path_factory):
    state = make_weights.build_state_dict(str(parity_dir.parent / "wav2lip.keys"),
                                          int(reference["weights_seed"]))
    path = tmp_path_factory.mktemp("e2e") / "wav2lip_seed1.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


class Capture:
    """Records the generator network's inputs and outputs, batch by batch."""

    def __init__(self, model):
        self.mels, self.faces, self.outputs = [], [], []
        self.handle = model.model.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        mel, face = inputs
        self.mels.append(mel.float().numpy().copy())
        self.faces.append(face.float().numpy().copy())
        self.outputs.append(output.float().numpy().copy())

    def arrays(self):
        self.handle.remove()
        return (np.concatenate(self.mels), np.concatenate(self.faces),
                np.concatenate(self.outputs))


def _compare(reference, mels, faces, outputs):
    n = int(reference["n_mel_chunks"])
    assert len(mels) >= n
    np.testing.assert_array_equal(np.rint(faces[:n] * 255).astype(np.uint8),
                                  reference["face_input_u8"])
    assert np.abs(faces[:n] * 255 - np.rint(faces[:n] * 255)).max() < 1e-3  # x/255 exactly
    np.testing.assert_allclose(mels[:n], reference["mel_input"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs[:n], reference["output"].astype(np.float32), atol=1e-3,
                               rtol=0)


def test_lipdub_sync_feeds_the_generator_what_the_reference_did(
        reference, seed1_generator, media_dir, tmp_path, one_torch_thread):
    from lipdub.pipeline.clip_sync import SyncOptions, sync_clip
    from lipdub.pipeline.generator import LipSyncModel

    y1, y2, x1, x2 = (int(v) for v in reference["box_y1_y2_x1_x2"])
    model = LipSyncModel(seed1_generator, device="cpu", precision="fp32")
    capture = Capture(model)
    options = SyncOptions(face="box", face_box=(x1, y1, x2, y2), device="cpu",
                          precision="fp32", codec="ffv1", progress=False)
    sync_clip(media_dir / "video" / FLAG, media_dir / "audio" / SPEECH, tmp_path / "out.mkv",
              options, model=model)
    _compare(reference, *capture.arrays())


def test_the_film_unit_renderer_feeds_the_generator_the_same(
        reference, seed1_generator, media_dir, tmp_path, one_torch_thread):
    from lipdub.pipeline.audio import read_audio
    from lipdub.pipeline.film_scan import scan_film
    from lipdub.pipeline.film_units import SyncUnit, lipsync_unit
    from lipdub.pipeline.generator import LipSyncModel
    from lipdub.pipeline.media.decode import probe_video
    from lipdub.pipeline.stem_mel import stem_mel
    from lipdub.pipeline.stems import analyse_stem

    info = probe_video(media_dir / "video" / FLAG)  # the clip as a one-shot film
    scan = scan_film(info, cut_times=[])
    stem = analyse_stem("anna", media_dir / "audio" / SPEECH, tmp_path)  # its dub as the stem
    samples = stem.samples()
    # The streamed stem is librosa.load's samples to the last one (lipdub sync decodes that way).
    np.testing.assert_array_equal(samples, read_audio(media_dir / "audio" / SPEECH).samples)
    assert mel_columns(len(samples)) == 402
    y1, y2, x1, x2 = (int(v) for v in reference["box_y1_y2_x1_x2"])
    unit = SyncUnit(shot=0, track_id=0, character="anna", start=0, end=len(scan.times))
    model = LipSyncModel(seed1_generator, device="cpu", precision="fp32")
    capture = Capture(model)
    lipsync_unit(info, scan, unit, [(x1, y1, x2, y2)] * (unit.end - unit.start),
                 stem_mel(stem.samples_path), model, tmp_path / "unit.npz")
    _compare(reference, *capture.arrays())
