"""Atomic writes: the final name holds either the old file or the complete new one, never a part."""
import pytest

from mindresnet.fileio import atomic_path, write_text


def test_write_text_creates_folder_and_file(tmp_path):
    target = tmp_path / "new" / "config.yaml"
    assert write_text(target, "a: 1\n") == target
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_suffix_is_kept_on_the_temporary_name(tmp_path):
    with atomic_path(tmp_path / "best.ckpt", ".ckpt") as tmp:
        assert tmp.name.endswith(".ckpt") and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    assert (tmp_path / "best.ckpt").read_bytes() == b"x"
