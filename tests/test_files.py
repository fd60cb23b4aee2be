import pytest

from superres.files import atomic_write, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    atomic_write_text(target, "old")

    def broken(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_text_writes_create_missing_folders(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "b" / "r.json", "{}\n")
    assert target.read_text() == "{}\n"
