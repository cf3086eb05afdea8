"""What lipdub says about what it did: a dub much shorter than the picture, a folder given
where a file is expected (issue 13, item 5 in part)."""

from __future__ import annotations

from filmmaker import write_stem

from lipdub.cli.main import main

FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"


def test_a_short_dub_is_said_on_stderr(media_dir, synthetic_generator, tmp_path, capsys):
    short = write_stem(tmp_path / "short.wav", [(0.0, media_dir / "audio" /
                                                 "en_vctk_p240__rtvc.mp3", 1.5)], 1.5)
    out = tmp_path / "out.mkv"
    code = main(["sync", str(media_dir / "video" / FLAG), str(short), "-o", str(out),
                 "--checkpoint", str(synthetic_generator), "--box", "150,150,430,440",
                 "--device", "cpu", "--codec", "ffv1"])
    err = capsys.readouterr().err
    assert code == 0 and out.exists()
    assert "warning:" in err and "covers only 1.50 s of the picture's 5.00 s" in err


def test_a_directory_where_a_file_is_expected(media_dir, synthetic_generator, tmp_path, capsys):
    code = main(["sync", str(tmp_path), str(media_dir / "audio" / "en_vctk_p240__rtvc.mp3"),
                 "-o", str(tmp_path / "o.mp4"), "--checkpoint", str(synthetic_generator),
                 "--box", "1,1,50,50"])
    err = capsys.readouterr().err
    assert code != 0 and f"{tmp_path}: is a directory" in err and "Traceback" not in err
