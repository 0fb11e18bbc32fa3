"""files.py: atomic replacement of files and folders, and bounded reads of the files a dataset names."""

import errno
import os

import pytest

from clipblip.errors import ClipBlipError
from clipblip.files import ITEM_LIMIT_ENV, atomic_path, atomic_write, item_limit, read_bounded, read_item

# ------------------------------------------------------------------------------------------------ atomic writes


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_the_file_only_when_the_block_ends_without_error(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half of the new")
            f.flush()
            assert target.read_text() == "old"  # a reader meanwhile sees the old file
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    with atomic_write(target, "wb") as f:
        f.write("new é".encode())
    assert target.read_text(encoding="utf-8") == "new é" and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(target, "a"):
            pass


def test_atomic_path_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.bin").write_bytes(b"from the last run")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "part.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["stale.bin"] and _leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.bin").write_bytes(b"a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"b")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["a.bin", "sub", "sub/b.bin"]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_tensors_get_the_mode_any_new_file_gets(tmp_path, umask):
    import torch
    from safetensors.torch import load_file

    from clipblip.files import new_file_mode, save_safetensors

    old = os.umask(umask)
    try:
        save_safetensors({"w": torch.arange(3.0)}, tmp_path / "w.safetensors", metadata={"format": "pt"})
        assert new_file_mode() == 0o666 & ~umask
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # safetensors alone: 0600
    assert torch.equal(load_file(tmp_path / "w.safetensors")["w"], torch.arange(3.0)) and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ bounded reads


def test_read_bounded_reads_regular_files_up_to_the_limit(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"0123456789")
    link = tmp_path / "link.bin"
    link.symlink_to(f)
    assert read_bounded(f, 10) == b"0123456789" and read_bounded(link, 100) == b"0123456789"
    with pytest.raises(OSError) as e:
        read_bounded(f, 9)
    assert e.value.errno == errno.EFBIG and "9 bytes" in e.value.strerror
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing.bin", 10)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_read_bounded_refuses_folders_fifos_and_devices_without_opening_them(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # nobody writes: opening it to read would wait forever
    with pytest.raises(IsADirectoryError):
        read_bounded(tmp_path, 1 << 20)
    with pytest.raises(OSError, match="FIFO") as e:
        read_bounded(fifo, 1 << 20)
    assert e.value.errno == errno.EINVAL
    if os.path.exists("/dev/zero"):
        (tmp_path / "zero.png").symlink_to("/dev/zero")
        for path in ("/dev/zero", tmp_path / "zero.png"):
            with pytest.raises(OSError, match="character device"):
                read_bounded(path, 1 << 20)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no /proc here")
def test_read_bounded_caps_a_file_longer_than_its_stat_size():
    assert os.stat("/proc/self/status").st_size == 0  # what makes it the case to test
    assert b"Name:" in read_bounded("/proc/self/status", 1 << 20)
    with pytest.raises(OSError) as e:
        read_bounded("/proc/self/status", 16)
    assert e.value.errno == errno.EFBIG


def test_item_limit_default_and_environment(monkeypatch):
    monkeypatch.delenv(ITEM_LIMIT_ENV, raising=False)
    assert item_limit() == 64 << 20
    monkeypatch.setenv(ITEM_LIMIT_ENV, "0.5")
    assert item_limit() == 512 << 10
    for bad in ("0", "-3", "lots", "nan", "inf", ""):
        monkeypatch.setenv(ITEM_LIMIT_ENV, bad)
        with pytest.raises(ClipBlipError, match=ITEM_LIMIT_ENV):
            item_limit()


def test_read_item_says_which_file_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(ITEM_LIMIT_ENV, str(100 / (1 << 20)))  # 100 bytes
    (tmp_path / "ok.txt").write_bytes(b"x" * 100)
    (tmp_path / "big.txt").write_bytes(b"x" * 101)
    assert read_item(tmp_path / "ok.txt") == b"x" * 100
    with pytest.raises(ClipBlipError, match=f"cannot read image '.*big.txt': .*100 bytes.*{ITEM_LIMIT_ENV}"):
        read_item(tmp_path / "big.txt", "image")
    with pytest.raises(ClipBlipError, match="'.*gone.txt': no such file"):
        read_item(tmp_path / "gone.txt")
    with pytest.raises(ClipBlipError, match="directory"):
        read_item(tmp_path)

