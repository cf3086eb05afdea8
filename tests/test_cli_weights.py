"""The ``lipdub`` entry point and its ``weights`` commands, called in-process through main()."""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from lipdub.cli.main import main
from lipdub.pipeline import weights_registry as R
from lipdub.pipeline.errors import RegistryError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, whatever the message
    assert lines[0].startswith("lipdub: error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch, tmp_path):
    # Errors must be reported, not raised; downloads must not touch the user's real cache.
    monkeypatch.delenv("LIPDUB_DEBUG", raising=False)
    monkeypatch.setenv("LIPDUB_HOME", str(tmp_path / "lipdub_home"))


# --- entry point ------------------------------------------------------------------------------


def test_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from lipdub.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "try:\n    main(['weights', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True)


def test_no_command_prints_usage(capsys):
    assert main([]) == 2
    assert "weights" in capsys.readouterr().err
    assert main(["weights"]) == 2
    err = capsys.readouterr().err
    assert "download" in err and "verify" in err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


# --- list -------------------------------------------------------------------------------------


def test_list(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for entry in R.list_entries():
        assert entry.name in out and entry.file in out
    assert "~416 MB" in out and "by hand" in out


def test_list_verbose(capsys):
    assert main(["weights", "list", "-v"]) == 0
    out = capsys.readouterr().out
    assert "non-commercial" in out and "MIT" in out
    assert "anchors (min_sizes): [[16, 32], [64, 128], [256, 512]]" in out
    assert "robots.ox.ac.uk" in out


# --- download ---------------------------------------------------------------------------------


def test_download_unknown_name(capsys):
    assert main(["weights", "download", "wav2lip_hd"]) == 2
    line = _error_line(capsys)
    assert "unknown weights name 'wav2lip_hd'" in line and "wav2lip_gan" in line


def test_download_without_direct_url(capsys):
    assert main(["weights", "download", "wav2lip", "--dest", "unused"]) == 2
    line = _error_line(capsys)
    assert "no direct download" in line and "lipdub weights verify" in line


def test_debug_env_reraises(monkeypatch):
    monkeypatch.setenv("LIPDUB_DEBUG", "1")
    with pytest.raises(RegistryError):
        main(["weights", "download", "wav2lip_hd"])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
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


def test_download_registry_entry_from_mirror(weights_dir, served, tmp_path, capsys):
    # The real default detector, served from a local "mirror", checked against the registry.
    folder, base = served
    source = weights_dir / "retinaface_mobilenet0.25_pytorch_retinaface.pth"
    (folder / "mirror.pth").write_bytes(source.read_bytes())
    dest = tmp_path / "dest"
    argv = [
        "weights",
        "download",
        "retinaface_mobilenet0.25",
        "--url",
        f"{base}/mirror.pth",
        "--dest",
        str(dest),
        "--no-progress",
    ]
    assert main(argv) == 0
    path = dest / "retinaface_mobilenet0.25.pth"
    assert capsys.readouterr().out.strip() == str(path)
    assert path.read_bytes() == source.read_bytes()


def test_download_mirror_with_other_file_is_refused(weights_dir, served, tmp_path, capsys):
    folder, base = served
    # The biubug6 file under the default entry's name: same format, different checksum.
    (folder / "mirror.pth").write_bytes((weights_dir / "retinaface_mobilenet0.25.pth").read_bytes())
    dest = tmp_path / "dest"
    argv = [
        "weights",
        "download",
        "retinaface_mobilenet0.25",
        "--url",
        f"{base}/mirror.pth",
        "--dest",
        str(dest),
        "--no-progress",
    ]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "expects" in line or "sha256" in line
    assert list(dest.iterdir()) == []


def test_download_html_page_is_refused(served, tmp_path, capsys):
    folder, base = served
    (folder / "expired.pth").write_text("<!DOCTYPE html><html>Link expired</html>")
    argv = [
        "weights",
        "download",
        "syncnet_v2",
        "--url",
        f"{base}/expired.pth",
        "--dest",
        str(tmp_path / "dest"),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert "HTML page" in _error_line(capsys)


def test_download_prints_checksum_when_registry_has_none(served, tmp_path, capsys, monkeypatch):
    folder, base = served
    path = folder / "tiny.pth"
    torch.save({"fc.weight": torch.zeros(2, 3)}, path)
    entry = R.WeightsEntry(
        name="tiny",
        file="tiny.pth",
        model="tests.Tiny",
        family="wav2lip",
        layout="state_dict",
        license="test only",
        urls=(f"{base}/tiny.pth",),
    )
    monkeypatch.setattr(R, "_entries", lambda: {"tiny": entry})
    assert main(["weights", "download", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "lipdub_home" / "weights" / "tiny.pth") in out
    assert hashlib.sha256(path.read_bytes()).hexdigest() in out


# --- verify -----------------------------------------------------------------------------------


def test_verify_real_file(weights_dir, capsys):
    path = weights_dir / "retinaface_mobilenet0.25.pth"
    assert main(["weights", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "retinaface_mobilenet0.25_biubug6 (matched by sha256)" in out
    assert "torch-legacy" in out and "retinaface (300 tensors)" in out
    assert "sha256 matches" in out


def test_verify_against_the_wrong_entry(weights_dir, capsys):
    path = weights_dir / "retinaface_mobilenet0.25.pth"
    assert main(["weights", "verify", str(path), "--name", "retinaface_mobilenet0.25"]) == 2
    line = _error_line(capsys)
    assert str(path) in line and "sha256" in line


def test_verify_wrong_family_for_name(tmp_path, capsys):
    path = tmp_path / "disc.pth"
    torch.save({"binary_pred.0.weight": torch.zeros(1), "binary_pred.0.bias": torch.zeros(1)}, path)
    assert main(["weights", "verify", str(path), "--name", "wav2lip"]) == 2
    line = _error_line(capsys)
    assert "visual quality discriminator" in line and "Wav2Lip generator" in line


def test_verify_unknown_file_is_described(tmp_path, capsys):
    path = tmp_path / "mine.pth"
    torch.save({"fc.weight": torch.zeros(2, 3)}, path)
    assert main(["weights", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no entry matches" in out and "torch-zip" in out and "unknown (1 tensors)" in out


def test_verify_html_file(tmp_path, capsys):
    path = tmp_path / "wav2lip_gan.pth"
    path.write_text("<html><body>Sign in to continue</body></html>")
    assert main(["weights", "verify", str(path)]) == 2
    line = _error_line(capsys)
    assert "HTML page" in line and str(path) in line


def test_verify_truncated_file(tmp_path, capsys):
    path = tmp_path / "cut.pth"
    torch.save({"fc.weight": torch.rand(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["weights", "verify", str(path)]) == 2
    line = _error_line(capsys)
    assert "truncated" in line and f"{len(data) // 2} bytes" in line


def test_verify_missing_file_and_unknown_name(tmp_path, capsys):
    assert main(["weights", "verify", str(tmp_path / "absent.pth")]) == 2
    assert "no such file" in _error_line(capsys)
    path = tmp_path / "mine.pth"
    torch.save({"fc.weight": torch.zeros(1)}, path)
    assert main(["weights", "verify", str(path), "--name", "nope"]) == 2
    assert "unknown weights name 'nope'" in _error_line(capsys)
