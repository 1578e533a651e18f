"""Atomic file writes (sb3_gap/files.py): a failed write leaves the previous file whole and no temporary file."""

import errno
import json

import pytest
from helpers import disk_full_on, temp_files  # tests/ is on sys.path (pytest's rootdir-relative import)


def test_atomic_write_json_on_a_full_disk_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    from sb3_gap.sweep.cell import atomic_write_json

    path = tmp_path / "run" / "curve.json"
    atomic_write_json(path, {"mean": [1.0]})
    disk_full_on(monkeypatch, "curve.json")
    with pytest.raises(OSError) as info:
        atomic_write_json(path, {"mean": [1.0, 2.0]})
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value) and "\n" not in str(info.value)
    assert json.loads(path.read_text()) == {"mean": [1.0]}  # the previous file, whole
    assert temp_files(tmp_path) == []
