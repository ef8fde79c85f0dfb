"""The atomic writer: whole files or none, with the permissions a plain `open()` would give."""

import os
import stat

import pytest

from hdlm.files import write_atomically, write_text_atomically


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_permissions_open_gives_it(tmp_path, umask_022):
    write_text_atomically(tmp_path / "sub" / "config.json", "{}\n")
    (tmp_path / "plain.json").write_text("{}\n")
    assert (tmp_path / "sub" / "config.json").read_text() == "{}\n"
    assert mode(tmp_path / "sub" / "config.json") == mode(tmp_path / "plain.json") == 0o644


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    target = tmp_path / "config.json"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomically(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "predictions.jsonl"
    target.write_text("old\n")

    def half_then_fail(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["predictions.jsonl"]
