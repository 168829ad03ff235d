from pathlib import Path

import pytest

from cellmae.utils.atomic import atomic_dir, atomic_path, write_text_atomic


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_and_dir_commit(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    with atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("1")
    with atomic_dir(tmp_path / "d") as d:  # replaces the old one whole
        (d / "y").write_text("2")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]


def test_atomic_outputs_get_umask_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
