"""Weights I/O (lipdub.models.weights) and the registry / downloader
(lipdub.pipeline.weights_registry).

Most tests use tiny modules whose keys follow the official naming (so family detection works);
the real RetinaFace files come from ../shared/weights and the real model classes are used only where
they import.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import pickle
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from lipdub.models import weights as W
from lipdub.pipeline import weights_registry as R
from lipdub.pipeline.errors import RegistryError

# --- tiny models with official key names ------------------------------------------------------


class ConvBN(nn.Module):
    """Like Wav2Lip's Conv2d wrapper: keys conv_block.0.* (conv) and conv_block.1.* (BN)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv_block(x))


class TinyGenerator(nn.Module):
    """Generator-shaped: face_encoder_blocks, audio_encoder, face_decoder_blocks, output_block."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([nn.Sequential(ConvBN(6, width))])
        self.audio_encoder = nn.Sequential(ConvBN(1, width))
        self.face_decoder_blocks = nn.ModuleList([nn.Sequential(ConvBN(width, width))])
        self.output_block = nn.Sequential(ConvBN(width, 3), nn.Conv2d(3, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_block(self.face_decoder_blocks[0](self.face_encoder_blocks[0](x)))


class TinyExpert(nn.Module):
    """SyncNet-expert-shaped: face_encoder / audio_encoder."""

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(ConvBN(15, 4))
        self.audio_encoder = nn.Sequential(ConvBN(1, 4))


class TinyPlain(nn.Module):
    """No family signature at all."""

    def __init__(self, extra: bool = False):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        if extra:
            self.head = nn.Linear(2, 1)


def _fresh(seed: int, width: int = 4) -> TinyGenerator:
    torch.manual_seed(seed)
    model = TinyGenerator(width)
    # Non-default BN buffers so that a load that silently skipped them would be caught.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(seed)
    return model


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _prefixed(state: dict) -> dict:
    return {f"module.{k}": v for k, v in state.items()}


# --- the four formats -------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_training_checkpoint_with_module_prefix(tmp_path, legacy):
    source = _fresh(1)
    optimizer = torch.optim.Adam(source.parameters(), lr=1e-4)
    source(torch.rand(1, 6, 8, 8)).mean().backward()
    optimizer.step()
    path = tmp_path / "checkpoint_step000000005.pth"
    checkpoint = {
        "state_dict": _prefixed(source.state_dict()),
        "optimizer": optimizer.state_dict(),
        "global_step": 5,
        "global_epoch": 1,
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)

    assert W.sniff_format(path) == ("torch-legacy" if legacy else "torch-zip")
    state = W.read_state_dict(path)
    assert list(state) == list(source.state_dict())
    target = W.load_weights(_fresh(2), path)
    _assert_same(target, source)

    resumed = W.read_checkpoint(path)
    assert resumed["global_step"] == 5 and resumed["global_epoch"] == 1
    assert list(resumed["state_dict"]) == list(source.state_dict())
    restored = torch.optim.Adam(_fresh(3).parameters(), lr=1e-4)
    restored.load_state_dict(resumed["optimizer"])  # weights-only load kept the optimizer intact
    assert restored.state_dict()["param_groups"][0]["lr"] == 1e-4


def test_bare_state_dict(tmp_path):
    source = _fresh(1)
    path = tmp_path / "bare.pth"
    torch.save(source.state_dict(), path)
    _assert_same(W.load_weights(_fresh(2), path), source)


def test_module_substring_removed_everywhere(tmp_path):
    # The original loader uses str.replace, so a nested "module." (DataParallel inside a wrapper)
    # disappears too.
    source = _fresh(1)
    state = {f"module.wrapper.module.{k}": v for k, v in source.state_dict().items()}
    assert set(W.strip_module_prefix(state)) == {f"wrapper.{k}" for k in source.state_dict()}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated, still used
def test_torchscript(tmp_path):
    source = _fresh(1).eval()
    path = tmp_path / "Wav2Lip-SD-GAN.pt"
    torch.jit.script(source).save(str(path))
    assert W.sniff_format(path) == "torchscript"
    _assert_same(W.load_weights(_fresh(2), path), source)
    with pytest.raises(W.WeightsFormatError, match="cannot resume"):
        W.read_checkpoint(path)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = _fresh(1)
    path = tmp_path / "gen.safetensors"
    save_file(source.state_dict(), str(path))
    assert W.sniff_format(path) == "safetensors"
    _assert_same(W.load_weights(_fresh(2), path), source)


def test_bare_state_dict_cannot_resume(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(_fresh(1).state_dict(), path)
    with pytest.raises(W.WeightsFormatError, match="not a training checkpoint"):
        W.read_checkpoint(path)


# --- strict keys and families -----------------------------------------------------------------


def test_strict_key_error_lists_missing_and_unexpected(tmp_path):
    path = tmp_path / "plain.pth"
    state = TinyPlain().state_dict()
    state["stray.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(W.WeightsKeyError) as info:
        W.load_weights(TinyPlain(extra=True), path)
    message = str(info.value)
    assert str(path) in message
    assert "TinyPlain" in message
    assert "missing keys (2): head.weight, head.bias" in message
    assert "unexpected keys (1): stray.weight" in message
    assert "\n" not in message


def test_strict_key_error_reports_shapes_and_caps_lists(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(_fresh(1, width=8).state_dict(), path)
    with pytest.raises(W.WeightsKeyError) as info:
        W.load_weights(_fresh(2, width=4), path)
    message = str(info.value)
    assert "shape mismatches" in message
    key = "face_encoder_blocks.0.0.conv_block.0.weight"
    assert f"{key}: file (8, 6, 3, 3) vs model (4, 6, 3, 3)" in message
    assert "more)" in message  # more than 10 mismatches: only the first ones are listed


def _section(shared_dir: Path, name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape for one model of wav2lip_state_dict_keys.txt."""
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in (shared_dir / "docs" / "wav2lip_state_dict_keys.txt").read_text().splitlines():
        if line.startswith("====="):
            current = sections.setdefault(line.strip("= "), {})
        elif line.strip():
            key, shape = line.split(" ", 1)
            current[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return sections[name]


@pytest.mark.parametrize(
    ("section", "family"),
    [
        ("Wav2Lip", "wav2lip"),
        ("Wav2Lip_disc_qual", "quality_disc"),
        ("SyncNet_color", "syncnet_expert"),
        ("S", "syncnet_python"),
    ],
)
def test_detect_family_from_official_keys(shared_dir, section, family):
    keys = list(_section(shared_dir, section))
    assert W.detect_family(keys) == family
    assert W.detect_family(f"module.{k}" for k in keys) == family


def test_detect_family_retinaface(shared_dir):
    lines = (shared_dir / "docs" / "retinaface_mobilenet_keys.txt").read_text().splitlines()
    assert W.detect_family(line.split(" ", 1)[0] for line in lines) == "retinaface"
    assert W.detect_family(["fc.weight"]) is None


@pytest.mark.parametrize(
    ("section", "held"),
    [
        ("Wav2Lip_disc_qual", "a visual quality discriminator (visual_quality_disc)"),
        ("SyncNet_color", "a SyncNet expert (lipsync_expert)"),
    ],
)
def test_wrong_family_is_named(tmp_path, shared_dir, section, held):
    # Official key names with tiny tensors: family detection looks at names only.
    state = {f"module.{k}": torch.zeros(1) for k in _section(shared_dir, section)}
    path = tmp_path / "not_a_generator.pth"
    torch.save({"state_dict": state, "global_step": 0}, path)
    with pytest.raises(W.WeightsKeyError) as info:
        W.load_weights(_fresh(1), path)
    message = str(info.value)
    assert f"this file holds {held}, not a Wav2Lip generator" in message
    assert str(path) in message and "TinyGenerator" in message


def test_wrong_family_small_keys(tmp_path):
    path = tmp_path / "expert.pth"
    torch.save(TinyExpert().state_dict(), path)
    with pytest.raises(W.WeightsKeyError, match="holds a SyncNet expert"):
        W.load_weights(_fresh(1), path)


# --- bad files --------------------------------------------------------------------------------


def test_html_page_saved_as_pth(tmp_path):
    path = tmp_path / "wav2lip_gan.pth"
    path.write_text("\n  <!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    for reader in (W.sniff_format, W.read_state_dict):
        with pytest.raises(W.WeightsFormatError) as info:
            reader(path)
        assert "HTML page" in str(info.value) and str(path) in str(info.value)
        assert "download it again" in str(info.value)
    with pytest.raises(W.WeightsFormatError, match="HTML page"):
        W.load_weights(_fresh(1), path)


def _cut_in_half(path: Path) -> int:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data) // 2


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors", "torchscript"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_truncated_file(tmp_path, kind):
    from safetensors.torch import save_file

    source = _fresh(1)
    path = tmp_path / f"cut.{kind}"
    if kind == "safetensors":
        save_file(source.state_dict(), str(path))
    elif kind == "torchscript":
        torch.jit.script(source.eval()).save(str(path))
    else:
        torch.save(source.state_dict(), path, _use_new_zipfile_serialization=kind == "zip")
    size = _cut_in_half(path)
    with pytest.raises(W.WeightsFormatError) as info:
        W.read_state_dict(path)
    assert "truncated" in str(info.value)
    assert f"{size} bytes" in str(info.value) and str(path) in str(info.value)


def test_empty_missing_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(W.WeightsFormatError, match="empty"):
        W.read_state_dict(empty)
    with pytest.raises(W.WeightsError, match="no such file"):
        W.read_state_dict(tmp_path / "absent.pth")
    unknown = tmp_path / "notes.pth"
    unknown.write_bytes(b"just some text, not weights at all")
    with pytest.raises(W.WeightsFormatError, match="not a weights file of a known format"):
        W.read_state_dict(unknown)
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    with pytest.raises(W.WeightsFormatError, match="Git LFS pointer"):
        W.read_state_dict(lfs)


EXECUTED: list[str] = []


def _mark_executed(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Trap:
    """Unpickling this would call _mark_executed: a stand-in for arbitrary code."""

    def __reduce__(self):
        return (_mark_executed, ("unpickled",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickled_object_is_refused(tmp_path, legacy):
    path = tmp_path / "evil.pth"
    torch.save(
        {"state_dict": _fresh(1).state_dict(), "extra": Trap()},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    EXECUTED.clear()
    with pytest.raises(W.WeightsFormatError) as info:
        W.read_state_dict(path)
    assert "refused" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(W.WeightsFormatError, match="refused"):
        W.read_checkpoint(path)
    assert EXECUTED == []


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"fc.weight": Trap()}))
    EXECUTED.clear()
    with pytest.raises(W.WeightsFormatError, match="plain Python pickle"):
        W.read_state_dict(path)
    assert EXECUTED == []


def test_whole_model_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(TinyPlain(), path)
    with pytest.raises(W.WeightsFormatError, match="torch.save\\(model.state_dict\\(\\)"):
        W.read_state_dict(path)


def test_non_tensor_dict_is_not_a_state_dict(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"global_step": 3, "fc.weight": torch.zeros(1)}, path)
    with pytest.raises(W.WeightsFormatError, match="not a state_dict"):
        W.read_state_dict(path)


# --- checksums --------------------------------------------------------------------------------


def test_checksum(tmp_path):
    path = tmp_path / "gen.pth"
    torch.save(_fresh(1).state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert W.sha256_file(path, chunk=7) == digest
    assert W.verify_sha256(path, digest.upper()) == digest
    W.load_weights(_fresh(2), path, sha256=digest)

    wrong = "0" * 64
    with pytest.raises(W.WeightsChecksumError) as info:
        W.verify_sha256(path, wrong)
    message = str(info.value)
    assert digest in message and wrong in message and "gen.pth" in message
    assert "download it" in message
    with pytest.raises(W.WeightsChecksumError):
        W.load_weights(_fresh(2), path, sha256=wrong)


# --- the real RetinaFace files ----------------------------------------------------------------


# The media README calls both files non-zip, but the Pytorch_Retinaface copy is a zip archive.
RETINAFACE_FILES = [
    ("retinaface_mobilenet0.25_pytorch_retinaface.pth", "retinaface_mobilenet0.25", "torch-zip"),
    ("retinaface_mobilenet0.25.pth", "retinaface_mobilenet0.25_biubug6", "torch-legacy"),
]


@pytest.mark.parametrize(("file_name", "entry_name", "fmt"), RETINAFACE_FILES)
def test_real_retinaface_files(weights_dir, shared_dir, file_name, entry_name, fmt):
    path = weights_dir / file_name
    entry = R.get_entry(entry_name)
    assert W.sha256_file(path) == entry.sha256
    assert path.stat().st_size == entry.size
    assert W.sniff_format(path) == fmt == entry.format
    state = W.read_state_dict(path)
    assert len(state) == 300
    assert all(t.device.type == "cpu" for t in state.values())
    expected = {}
    for line in (shared_dir / "docs" / "retinaface_mobilenet_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        expected[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert W.detect_family(state) == "retinaface"

    result = R.verify(path)
    assert result.entry == entry and result.matched_by == "sha256" and result.ok


@pytest.mark.parametrize(("file_name", "entry_name", "fmt"), RETINAFACE_FILES)
def test_real_retinaface_loads_strictly(weights_dir, file_name, entry_name, fmt):
    retinaface = pytest.importorskip("lipdub.models.retinaface")
    entry = R.get_entry(entry_name)
    model = W.load_weights(retinaface.RetinaFace(), weights_dir / file_name, sha256=entry.sha256)
    assert W.detect_family(model.state_dict()) == "retinaface"


def test_retinaface_with_the_other_entry_name_is_a_mismatch(weights_dir):
    result = R.verify(weights_dir / "retinaface_mobilenet0.25.pth", name="retinaface_mobilenet0.25")
    assert not result.ok
    assert any("sha256" in p for p in result.problems)


# --- the real model classes (once they import) ------------------------------------------------


REAL_MODELS = [
    ("lipdub.models.wav2lip", "Wav2Lip", "Wav2Lip", "wav2lip"),
    ("lipdub.models.syncnet", "SyncNetExpert", "SyncNet_color", "syncnet_expert"),
    ("lipdub.models.discriminator", "QualityDiscriminator", "Wav2Lip_disc_qual", "quality_disc"),
    ("lipdub.models.lse", "SyncNetLSE", "S", "syncnet_python"),
]


@pytest.mark.parametrize(("module", "cls", "section", "family"), REAL_MODELS)
def test_real_model_round_trip(tmp_path, shared_dir, module, cls, section, family):
    # These classes are written alongside this module; skip only while one does not import yet.
    model_cls = getattr(pytest.importorskip(module), cls)
    model = model_cls()
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == _section(shared_dir, section)
    assert W.detect_family(state) == family
    # An official-style training checkpoint: "module." keys, legacy format.
    path = tmp_path / f"{cls}.pth"
    torch.save(
        {"state_dict": _prefixed(state), "optimizer": {}, "global_step": 1, "global_epoch": 0},
        path,
        _use_new_zipfile_serialization=False,
    )
    _assert_same(W.load_weights(model_cls(), path), model)
    # And a file of another family is named as such.
    other = tmp_path / "other.pth"
    torch.save(
        TinyExpert().state_dict() if family != "syncnet_expert" else _fresh(1).state_dict(), other
    )
    with pytest.raises(W.WeightsKeyError, match=f"this file holds .*, not .* as {cls} needs"):
        W.load_weights(model_cls(), other)


def test_models_weights_imports_nothing_from_pipeline():
    source = Path(importlib.import_module("lipdub.models.weights").__file__).read_text()
    assert "pipeline" not in "".join(
        line for line in source.splitlines() if line.lstrip().startswith(("import", "from"))
    )


# --- registry ---------------------------------------------------------------------------------


EXPECTED_NAMES = {
    "wav2lip",
    "wav2lip_gan",
    "wav2lip_sd_gan_ts",
    "wav2lip_sd_nogan_ts",
    "lipsync_expert",
    "visual_quality_disc",
    "syncnet_v2",
    "retinaface_mobilenet0.25",
    "retinaface_mobilenet0.25_biubug6",
}


def test_registry_contents():
    entries = {e.name: e for e in R.list_entries()}
    assert set(entries) == EXPECTED_NAMES
    for entry in entries.values():
        assert entry.family in W.FAMILIES
        assert entry.format is None or entry.format in W.FORMATS
        module, _, cls = entry.model.rpartition(".")
        assert module.startswith("lipdub.models.")
        assert isinstance(getattr(importlib.import_module(module), cls), type), entry.model
        assert entry.sha256 is None or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)
        assert entry.size is not None or entry.approx_size
        assert entry.license and entry.notes
        assert entry.urls or entry.pages
    for name in ("wav2lip", "wav2lip_gan", "lipsync_expert", "visual_quality_disc"):
        assert entries[name].sha256 is None and "non-commercial" in entries[name].license
    assert entries["wav2lip"].approx_size == "~416 MB"
    assert entries["wav2lip_sd_gan_ts"].format == "torchscript"
    assert entries["retinaface_mobilenet0.25"].anchors == ((16, 32), (64, 128), (256, 512))
    assert entries["retinaface_mobilenet0.25_biubug6"].anchors == ((10, 20), (32, 64), (128, 256))
    assert "MIT" in entries["retinaface_mobilenet0.25"].license


def test_get_entry_unknown_name_lists_known():
    with pytest.raises(RegistryError) as info:
        R.get_entry("wav2lip_hd")
    assert "wav2lip_hd" in str(info.value) and "wav2lip_gan" in str(info.value)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIPDUB_HOME", str(tmp_path / "home"))
    assert R.cache_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("LIPDUB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert R.cache_dir() == tmp_path / ".cache" / "lipdub" / "weights"


# --- download from a local HTTP server --------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@contextmanager
def _serve(folder: Path):
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(folder, base URL) of a local HTTP server; proxies are bypassed for 127.0.0.1."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    with _serve(folder) as base:
        yield folder, base


def _tiny_entry(url: str | None, data: bytes | None, **overrides) -> R.WeightsEntry:
    values = dict(
        name="tiny",
        file="tiny.pth",
        model="tests.TinyGenerator",
        family="wav2lip",
        layout="state_dict",
        license="test only",
        urls=(url,) if url else (),
        pages=("https://example.invalid/tiny",),
        size=len(data) if data is not None else None,
        sha256=hashlib.sha256(data).hexdigest() if data is not None else None,
    )
    values.update(overrides)
    return R.WeightsEntry(**values)


def _weights_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "source.pth"
    torch.save(_fresh(1).state_dict(), path)
    return path.read_bytes()


def test_download_lands_verified(tmp_path, served):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "tiny.pth").write_bytes(data)
    dest = tmp_path / "dest"
    path = R.download(_tiny_entry(f"{base}/tiny.pth", data), dest_dir=dest, progress=False)
    assert path == dest / "tiny.pth"
    assert path.read_bytes() == data
    assert [p.name for p in dest.iterdir()] == ["tiny.pth"]  # no stray temporary file
    _assert_same(W.load_weights(_fresh(2), path), _fresh(1))

    # A second call finds the verified file and does not fetch again (the server lost it).
    (folder / "tiny.pth").unlink()
    before = path.stat().st_mtime_ns
    assert R.download(_tiny_entry(f"{base}/tiny.pth", data), dest_dir=dest) == path
    assert path.stat().st_mtime_ns == before


def test_download_wrong_sha256_leaves_nothing(tmp_path, served):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "tiny.pth").write_bytes(data)
    dest = tmp_path / "dest"
    entry = _tiny_entry(f"{base}/tiny.pth", data, sha256="0" * 64)
    with pytest.raises(W.WeightsChecksumError) as info:
        R.download(entry, dest_dir=dest, progress=False)
    assert "0" * 64 in str(info.value) and hashlib.sha256(data).hexdigest() in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_wrong_size_leaves_nothing(tmp_path, served):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "tiny.pth").write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(RegistryError, match="expects"):
        R.download(_tiny_entry(f"{base}/tiny.pth", data, size=len(data) + 1), dest_dir=dest)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("served_name", ["tiny.pth", "expired.html"])
def test_download_refuses_html(tmp_path, served, served_name):
    # .pth is served as application/octet-stream (the body is sniffed); .html as text/html.
    folder, base = served
    (folder / served_name).write_text("<!DOCTYPE html><html><body>Link expired</body></html>")
    dest = tmp_path / "dest"
    entry = _tiny_entry(f"{base}/{served_name}", None)
    with pytest.raises(RegistryError) as info:
        R.download(entry, dest_dir=dest, progress=False)
    assert "HTML page" in str(info.value) and "https://example.invalid/tiny" in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_replaces_a_corrupt_existing_file(tmp_path, served):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "tiny.pth").write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "tiny.pth").write_bytes(data[: len(data) // 2])
    path = R.download(_tiny_entry(f"{base}/tiny.pth", data), dest_dir=dest, progress=False)
    assert path.read_bytes() == data


def test_download_without_checksum_checks_the_format(tmp_path, served):
    folder, base = served
    (folder / "tiny.pth").write_bytes(b"not weights, but not HTML either")
    dest = tmp_path / "dest"
    with pytest.raises(W.WeightsFormatError):
        R.download(_tiny_entry(f"{base}/tiny.pth", None), dest_dir=dest, progress=False)
    assert list(dest.iterdir()) == []


def test_download_url_override_and_mirror_fallback(tmp_path, served):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "mirror.pth").write_bytes(data)
    no_urls = _tiny_entry(None, data)
    path = R.download(no_urls, url=f"{base}/mirror.pth", dest_dir=tmp_path / "a", progress=False)
    assert path.read_bytes() == data
    # The first URL is missing (404), the second one works.
    two = _tiny_entry(None, data, urls=(f"{base}/gone.pth", f"{base}/mirror.pth"))
    assert R.download(two, dest_dir=tmp_path / "b", progress=False).read_bytes() == data


def test_download_failures(tmp_path, served):
    _, base = served
    with pytest.raises(RegistryError, match="could not download tiny .*HTTP 404"):
        R.download(_tiny_entry(f"{base}/gone.pth", None), dest_dir=tmp_path / "d", progress=False)
    with pytest.raises(RegistryError, match="no direct download.*example.invalid.*verify"):
        R.download(_tiny_entry(None, None), dest_dir=tmp_path / "d")
    with pytest.raises(RegistryError, match="unknown weights name"):
        R.download("nope", dest_dir=tmp_path / "d")


def test_download_by_registry_name(tmp_path, served, monkeypatch):
    folder, base = served
    data = _weights_bytes(tmp_path)
    (folder / "tiny.pth").write_bytes(data)
    entry = _tiny_entry(f"{base}/tiny.pth", data)
    monkeypatch.setattr(R, "_entries", lambda: {"tiny": entry})
    monkeypatch.setenv("LIPDUB_HOME", str(tmp_path / "home"))
    path = R.download("tiny", progress=False)
    assert path == tmp_path / "home" / "weights" / "tiny.pth"
    assert R.verify(path).entry == entry


def test_verify_reports_family_and_mismatches(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pth"
    torch.save(_fresh(1).state_dict(), path)
    data = path.read_bytes()
    monkeypatch.setattr(R, "_entries", lambda: {"tiny": _tiny_entry(None, data)})
    result = R.verify(path)
    assert (result.format, result.family, result.tensors) == ("torch-zip", "wav2lip", 30)
    assert result.entry.name == "tiny" and result.matched_by == "sha256" and result.ok

    other = tmp_path / "expert.pth"
    torch.save(TinyExpert().state_dict(), other)
    result = R.verify(other, name="tiny")
    assert result.matched_by == "name"
    assert any("holds a SyncNet expert" in p for p in result.problems)
    assert any("sha256" in p for p in result.problems)


def test_download_into_unwritable_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(RegistryError, match="cannot write to"):
        R.download(_tiny_entry("http://127.0.0.1:9/x", None), dest_dir=blocker / "sub")


def test_the_default_detector_ships_in_the_package(tmp_path, monkeypatch):
    """A fresh machine (empty weights cache) finds the MIT face detector without a download."""
    from lipdub.models.weights import sha256_file
    from lipdub.pipeline.faces.detector import load_face_detector, resolve_detector

    monkeypatch.setenv("LIPDUB_HOME", str(tmp_path))
    path, entry = resolve_detector(None)
    assert entry.name == "retinaface_mobilenet0.25" and path.parent.name == "weights"
    assert not str(path).startswith(str(tmp_path))  # not from the (empty) cache
    assert sha256_file(path) == entry.sha256 and path.stat().st_size == entry.size
    assert load_face_detector(None) is not None
    # A downloaded copy in the cache still comes first.
    (tmp_path / "weights").mkdir()
    cached = tmp_path / "weights" / entry.file
    cached.write_bytes(path.read_bytes())
    assert resolve_detector(None)[0] == cached
