"""The one atomic write routine: a file is either as it was or complete, never half-written."""

from __future__ import annotations

import json

import pytest

from dlstructured import _io


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    _io.write_json(path, {"epochs": 3})
    assert json.loads(path.read_text()) == {"epochs": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with _io.atomic_path(path) as temporary:
            assert temporary.parent == tmp_path and temporary.name.endswith("model.keras")
            temporary.write_bytes(b"half")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_json_that_is_not_plain_data_fails_before_anything_is_replaced(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    with pytest.raises(ValueError):
        _io.write_json(path, {"loss": float("nan")})
    assert path.read_text() == "{}"
    assert len(list(tmp_path.iterdir())) == 1


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        _io.write_text(tmp_path / "missing" / "dir" / "x.txt", "x")
