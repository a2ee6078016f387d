"""Streaming tables larger than memory: data/stream.py, and streamed runs through run.py and the
command line. Every table is a tiny Parquet folder written in tmp_path."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from dlstructured.data import stream
from dlstructured.data.preprocessing import TabularPreprocessor
from dlstructured.data.stream import StreamSource, StreamTable, fit_preprocessor
from dlstructured.errors import DataError, DataWarning


def _frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.normal(10, 3, rows)
    size[::7] = np.nan
    return pd.DataFrame({
        "size": size,
        "count": rng.integers(0, 50, rows),
        "color": rng.choice(["red", "green", "blue"], rows),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400, rows), "D"),
        "label": rng.choice(["no", "yes"], rows),
    })


def _folder(tmp_path, frame: pd.DataFrame, files: int = 3, row_group: int = 7, name="table"):
    folder = tmp_path / name
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / f"part-{index}.parquet", row_group_size=row_group)
    return folder


def _close(first, second, path="config"):
    """Assert two plain configs are equal, floats up to rounding."""
    if isinstance(first, dict):
        assert first.keys() == second.keys(), path
        for key in first:
            _close(first[key], second[key], f"{path}.{key}")
    elif isinstance(first, list):
        assert len(first) == len(second), path
        for index, (a, b) in enumerate(zip(first, second, strict=True)):
            _close(a, b, f"{path}[{index}]")
    elif isinstance(first, float) and isinstance(second, float):
        assert math.isclose(first, second, rel_tol=1e-12, abs_tol=1e-12), path
    else:
        assert first == second, path


# --------------------------------------------------------------------------------------------
# The statistics pass


@pytest.mark.parametrize("scaling", ["minmax", "standard", "robust"])
def test_statistics_pass_equals_the_in_memory_fit(tmp_path, scaling):
    frame = _frame()
    table = StreamTable(_folder(tmp_path, frame))
    assert table.num_rows == 60 and len(table.pieces) == 9  # 3 files of 20 rows, groups of 7
    streamed = TabularPreprocessor("label", scaling=scaling)
    counts = fit_preprocessor(table, streamed, valid_fraction=0.0, seed=0)
    whole = TabularPreprocessor("label", scaling=scaling).fit(pd.read_parquet(table.files))
    assert counts == {"train": 60, "valid": 0}
    _close(streamed.get_config(), whole.get_config())


def test_statistics_pass_fits_only_the_training_rows(tmp_path):
    frame = _frame(80).assign(price=lambda f: f["size"].fillna(0) * 2 + 1).drop(columns="label")
    table = StreamTable(_folder(tmp_path, frame))
    streamed = TabularPreprocessor("price", target_scaling="standard", clip_target=True)
    counts = fit_preprocessor(table, streamed, valid_fraction=0.3, seed=5)
    valid = stream.valid_mask(np.arange(80), 0.3, 5)
    assert counts == {"train": int((~valid).sum()), "valid": int(valid.sum())}
    whole = TabularPreprocessor("price", target_scaling="standard", clip_target=True)
    whole.fit_transform_parts(frame, [np.flatnonzero(~valid)], fit_rows=np.flatnonzero(~valid))
    _close(streamed.get_config(), whole.get_config())


def test_category_cap_keeps_the_most_frequent_with_a_notice(tmp_path):
    frame = pd.DataFrame({"city": ["a"] * 10 + ["b"] * 6 + ["c"] * 3 + ["d"] * 2 + ["e"],
                          "y": np.arange(22.0)})
    table = StreamTable(_folder(tmp_path, frame, files=2, row_group=4))
    pre = TabularPreprocessor("y", max_one_hot=1)
    with pytest.warns(DataWarning, match=r"Column 'city' has 5 categories; kept the 3 most"):
        fit_preprocessor(table, pre, valid_fraction=0.0, seed=0, max_categories=3)
    assert pre.get_config()["state"]["categorical"][0]["categories"] == ["a", "b", "c"]
    codes = pre.transform(pd.DataFrame({"city": ["a", "e"], "y": [0.0, 1.0]}))[:, -1]
    assert codes.tolist() == [2.0, 0.0]  # "e" was cut: the unknown slot


# --------------------------------------------------------------------------------------------
# The batch source


def _numbered(tmp_path, rows=103):
    """A table whose regression target is the global row number (unscaled)."""
    frame = pd.DataFrame({"x": np.sin(np.arange(rows)), "y": np.arange(rows, dtype=float)})
    table = StreamTable(_folder(tmp_path, frame, files=4, row_group=6))
    pre = TabularPreprocessor("y", target_scaling=None)
    counts = fit_preprocessor(table, pre, valid_fraction=0.25, seed=3)
    sources = {part: StreamSource(table, pre, part=part, valid_fraction=0.25, split_seed=3,
                                  buffer_rows=10, num_rows=counts[part])
               for part in ("train", "valid")}
    return sources, stream.valid_mask(np.arange(rows), 0.25, 3)


def _rows(source, epoch, seed, batch_size=8):
    batches = list(source.batches(epoch, batch_size=batch_size, seed=seed))
    for x, _, weights in batches:
        assert x.dtype == np.float32 and x.flags.c_contiguous and weights is None
    assert all(len(x) == batch_size for x, _, _ in batches[:-1])
    return np.concatenate([y for _, y, _ in batches]).astype(int).tolist()


def test_every_training_row_once_per_epoch_and_validation_disjoint(tmp_path):
    sources, valid = _numbered(tmp_path)
    train, held_out = sources["train"], sources["valid"]
    for epoch in range(2):
        rows = _rows(train, epoch, seed=11)
        assert sorted(rows) == np.flatnonzero(~valid).tolist()
        assert len(rows) == train.num_rows
    assert _rows(held_out, 0, seed=None) == np.flatnonzero(valid).tolist()  # in file order
    assert StreamSource(train.table, train.preprocessor, part="valid", valid_fraction=0.25,
                        split_seed=3).num_rows == held_out.num_rows  # counted when not given


def test_shuffling_is_fixed_by_seed_and_epoch(tmp_path):
    sources, _ = _numbered(tmp_path)
    train = sources["train"]
    first = _rows(train, 0, seed=11)
    assert _rows(train, 0, seed=11) == first  # reproducible
    assert _rows(train, 1, seed=11) != first  # another epoch, another order
    assert _rows(train, 0, seed=12) != first
    assert _rows(train, 0, seed=None) == sorted(first)  # no seed: file order
    # rows of different pieces are mixed within a batch
    batch = next(train.batches(0, batch_size=8, seed=11))[1].astype(int)
    assert len({row // 6 for row in batch}) > 1


@pytest.mark.parametrize("processes", [2, 3, 7])
def test_shards_split_a_part_into_contiguous_disjoint_ranges(tmp_path, processes):
    sources, valid = _numbered(tmp_path)
    whole = sources["train"]
    shards = [StreamSource(whole.table, whole.preprocessor, part="train", valid_fraction=0.25,
                           split_seed=3, buffer_rows=10, shard=(rank, processes))
              for rank in range(processes)]
    rows = [sorted(_rows(shard, 0, seed=11)) for shard in shards]
    assert sum(rows, []) == np.flatnonzero(~valid).tolist()  # every row once, in rank order
    for shard, mine in zip(shards, rows, strict=True):
        first, end = shard.rows
        assert end - first in (103 // processes, 103 // processes + 1)
        assert all(first <= row < end for row in mine) and shard.num_rows == len(mine)
        touched = [index for index, piece in enumerate(whole.table.pieces)
                   if piece.first_row < end and first < piece.first_row + piece.num_rows]
        assert shard.pieces.tolist() == touched  # it reads only the row groups it needs
    assert sorted(_rows(shards[0], 1, seed=11)) == rows[0]  # the same rows every epoch


def test_a_shard_without_rows_is_refused_naming_the_process(tmp_path):
    frame = pd.DataFrame({"x": np.arange(12.0), "y": np.arange(12.0)})
    table = StreamTable(_folder(tmp_path, frame, files=1, row_group=4))
    assert np.flatnonzero(stream.valid_mask(np.arange(12), 0.1, 0)).tolist() == [0, 7, 10]
    with pytest.raises(DataError, match=r"process 1 of 4 has no valid rows.*rows are 3 to 5"):
        stream.prepare_stream(table, TabularPreprocessor("y"), valid_fraction=0.1, seed=0,
                              shard=(1, 4))


def _without_files(source):
    """Move the table's files away, so that only a cache can still give its rows."""
    for path in source.table.files:
        os.replace(path, path + ".away")


def test_a_cached_source_gives_the_same_batches_from_its_cache(tmp_path):
    sources, _ = _numbered(tmp_path)
    plain = sources["train"]
    expected = [[(x.copy(), y.copy()) for x, y, _ in plain.batches(epoch, batch_size=8, seed=11)]
                for epoch in range(3)]
    cached = StreamSource(plain.table, plain.preprocessor, part="train", valid_fraction=0.25,
                          split_seed=3, buffer_rows=10, num_rows=plain.num_rows)
    cached.cache_in(tmp_path / "cache")
    first = list(cached.batches(0, batch_size=8, seed=11))  # reads the files, fills the cache
    assert len(list((tmp_path / "cache").glob("*-x.npy"))) == len(cached.table.pieces)
    _without_files(cached)
    for epoch, batches in enumerate([first, *(list(cached.batches(epoch, batch_size=8, seed=11))
                                              for epoch in (1, 2))]):
        assert len(batches) == len(expected[epoch])
        for (x, y, weights), (want_x, want_y) in zip(batches, expected[epoch], strict=True):
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y, want_y)
            assert x.dtype == np.float32 and x.flags.c_contiguous and weights is None


def test_a_cache_leaves_the_disk_reserve_alone(tmp_path):
    sources, _ = _numbered(tmp_path)
    source = sources["valid"]
    source.cache_in(tmp_path / "cache", reserve_bytes=1 << 62)  # more than any disk has free
    rows = _rows(source, 0, seed=None)
    assert not list((tmp_path / "cache").iterdir())
    _without_files(source)
    with pytest.raises(DataError, match="cannot read row group"):  # still read from the files
        _rows(source, 1, seed=None)
    assert rows == sorted(rows)


def test_a_streamed_run_of_several_epochs_caches_outside_its_output(tmp_path, monkeypatch):
    from dlstructured import RunConfig, fit_table

    folders = []
    original = StreamSource.cache_in

    def recording(self, folder, **options):
        folders.append(folder)
        original(self, folder, **options)

    monkeypatch.setattr(StreamSource, "cache_in", recording)
    _, folder = _regression_folder(tmp_path)
    out = tmp_path / "out"
    fit_table(folder, "y", RunConfig(model="dense", hidden_units=(8,), epochs=3, batch_size=32,
                                     seed=0), out=out)
    assert [path.name for path in folders] == ["train", "valid"]
    assert all(out not in path.parents and not path.exists() for path in folders)  # removed
    fit_table(folder, "y", RunConfig(model="dense", hidden_units=(8,), epochs=1, batch_size=32,
                                     seed=0), out=tmp_path / "once")
    assert len(folders) == 2  # one epoch: nothing to read twice, nothing cached


# --------------------------------------------------------------------------------------------
# Bad input


def test_files_that_disagree_on_a_type_are_refused(tmp_path):
    folder = _folder(tmp_path, _frame(), files=2)
    odd = _frame(5).assign(count=lambda f: f["count"].astype(str))
    odd.to_parquet(folder / "part-9.parquet")
    with pytest.raises(DataError, match=r"type of column 'count'.*int64 in .*part-0.parquet"
                                        r".*string in .*part-9.parquet"):
        StreamTable(folder)


def test_files_that_disagree_on_columns_are_refused(tmp_path):
    folder = _folder(tmp_path, _frame(), files=2)
    _frame(5).drop(columns="color").to_parquet(folder / "part-9.parquet")
    with pytest.raises(DataError, match=r"part-9.parquet' has no column 'color'"):
        StreamTable(folder)


def test_an_empty_folder_or_pattern_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"the folder '.*empty' holds no Parquet file"):
        StreamTable(tmp_path / "empty")
    with pytest.raises(DataError, match=r"the pattern '.*nothing-\*.parquet' matches no file"):
        StreamTable(str(tmp_path / "nothing-*.parquet"))


def test_a_row_group_of_the_wrong_type_names_file_and_column(tmp_path):
    values = ["1.5", "2", "?", "4"] + ["3"] * 4 + ["seven"] + ["1"] * 3
    frame = pd.DataFrame({"amount": values, "y": np.arange(12.0)})
    folder = _folder(tmp_path, frame, files=2, row_group=4)
    pre = TabularPreprocessor("y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=r"row group 0 of '.*part-1.parquet'.*Column "
                                            r"'amount' must hold numbers.*'seven'"):
            fit_preprocessor(StreamTable(folder), pre, valid_fraction=0.0, seed=0)


# --------------------------------------------------------------------------------------------
# A CSV file


def test_csv_is_converted_once_and_the_input_is_untouched(tmp_path):
    csv = tmp_path / "input" / "big.csv"
    csv.parent.mkdir()
    _frame(30).to_csv(csv, index=False)
    before = csv.read_bytes(), os.stat(csv).st_mtime_ns
    cache = tmp_path / "out" / stream.CACHE_FOLDER
    converted = stream.csv_to_parquet(csv, cache)
    assert converted.parent == cache and StreamTable(converted).num_rows == 30
    written = os.stat(converted).st_mtime_ns
    assert stream.csv_to_parquet(csv, cache) == converted
    assert os.stat(converted).st_mtime_ns == written  # reused, not written again
    assert (csv.read_bytes(), os.stat(csv).st_mtime_ns) == before
    assert sorted(p.name for p in csv.parent.iterdir()) == ["big.csv"]
    _frame(31).to_csv(csv, index=False)  # the CSV changed: converted again
    assert StreamTable(stream.csv_to_parquet(csv, cache)).num_rows == 31
    with pytest.raises(DataError, match="is the CSV file's own folder"):
        stream.csv_to_parquet(csv, csv.parent)


# --------------------------------------------------------------------------------------------
# Streamed runs


def _regression_folder(tmp_path, rows=240):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.uniform(0, 5, rows),
                          "kind": rng.choice(["p", "q", "r"], rows)})
    frame["y"] = 3 * frame["a"] - frame["b"] + (frame["kind"] == "q") * 2.0
    return frame, _folder(tmp_path, frame, files=3, row_group=25)


def test_fit_table_streams_a_folder_end_to_end(tmp_path):
    from dlstructured import RunConfig, fit_table, load_model

    frame, folder = _regression_folder(tmp_path)
    out = tmp_path / "out"
    config = RunConfig(model="dense", hidden_units=(8,), epochs=2, batch_size=32, seed=0)
    run = fit_table(folder, "y", config, out=out)
    valid = stream.valid_mask(np.arange(len(frame)), 0.3, 0)
    assert run.rows == {"train": int((~valid).sum()), "valid": int(valid.sum())}
    assert run.result.epochs_run == 2 and list(run.result.history.index) == [1, 2]
    assert "val_loss" in run.result.history.columns
    for name in ("model.keras", "metrics.json", "history.csv", "run.json"):
        assert (out / name).is_file()
    # the preprocessing is what fitting the training rows in memory makes
    expected = TabularPreprocessor("y")
    expected.fit_transform_parts(frame, [np.flatnonzero(~valid)], fit_rows=np.flatnonzero(~valid))
    _close(run.model.preprocessor.get_config(), expected.get_config())
    # the saved model predicts raw rows as the run's model does
    loaded = load_model(out / "model.keras")
    rows = frame.drop(columns="y").head(20)
    np.testing.assert_allclose(loaded.predict(rows), run.model.predict(rows), rtol=1e-5)
    network = np.asarray(run.model.network(expected.transform(rows))).reshape(-1)
    np.testing.assert_allclose(np.asarray(loaded.predict(rows)).reshape(-1),
                               expected.inverse_transform_target(network), rtol=1e-4)


def test_the_default_model_on_a_streamed_table_fits_once_and_says_so(tmp_path):
    from dlstructured import RunConfig, fit_table

    _, folder = _regression_folder(tmp_path)
    config = RunConfig(hidden_units=(8,), epochs=2, seed=0)
    with pytest.warns(DataWarning, match=r"streamed.*trains once.*4 ensemble members instead "
                                         r"of 8"):
        run = fit_table(str(folder / "*.parquet"), "y", config)
    assert run.refit_result is None and run.recipe.config.members == 4


def test_command_line_trains_on_a_folder_and_predicts_batch_by_batch(tmp_path, capsys,
                                                                      monkeypatch):
    import keras

    from dlstructured.cli import main
    from dlstructured.run import predict_streamed, prediction_frame
    from dlstructured.tabular import load_model

    monkeypatch.chdir(tmp_path)
    frame, folder = _regression_folder(tmp_path)
    backend = keras.backend.backend()
    status = main(["train", str(folder), "--target", "y", "--model", "dense",
                   "--hidden-units", "8", "--epochs", "2", "--out", "run", "--quiet",
                   "--backend", backend])
    assert status == 0, capsys.readouterr().err
    model = tmp_path / "run" / "model.keras"
    assert model.is_file()
    capsys.readouterr()
    status = main(["predict", str(model), str(folder / "*.parquet"), "--out", "pred.csv",
                   "--backend", backend])
    assert status == 0, capsys.readouterr().err
    written = pd.read_csv(tmp_path / "pred.csv")
    loaded = load_model(model)
    expected = prediction_frame(loaded, frame)
    assert list(written.columns) == ["prediction"] and len(written) == len(frame)
    np.testing.assert_allclose(written["prediction"], expected["prediction"], rtol=1e-4)
    # a CSV input streams in chunks; the input file is refused as the output
    frame.to_csv(tmp_path / "rows.csv", index=False)
    assert predict_streamed(loaded, tmp_path / "rows.csv", tmp_path / "p2.csv",
                            batch_rows=50) == len(frame)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p2.csv")["prediction"],
                               expected["prediction"], rtol=1e-4)
    from dlstructured.errors import RunError

    first = sorted(folder.iterdir())[0]
    with pytest.raises(RunError, match="is the data file"):
        predict_streamed(loaded, folder, first)


def test_a_streamed_run_resumes_and_refuses_changed_files(tmp_path):
    from dlstructured import RunConfig, fit_table
    from dlstructured.run import read_run_record, resume_run

    frame, folder = _regression_folder(tmp_path)
    out = tmp_path / "out"
    config = RunConfig(model="dense", hidden_units=(8,), epochs=2, batch_size=32, seed=0)
    fit_table(folder, "y", config, out=out)
    assert read_run_record(out).fingerprint["rows"] == len(frame)
    resumed = resume_run(out, epochs=3)
    assert resumed.result.epochs_run == 3
    frame.head(5).to_parquet(folder / "part-9.parquet")
    with pytest.raises(DataError, match=r"changed since the run started \(rows 240 -> 245\)"):
        resume_run(out, epochs=4)


@pytest.mark.parametrize(("labels", "dtype"), [(["no", "yes"], np.float32),
                                               (["a", "b", "c"], np.int32)])
def test_class_targets_stream_as_the_network_trains_on_them(tmp_path, labels, dtype):
    frame = pd.DataFrame({"x": np.arange(30.0), "label": (labels * 30)[:30]})
    frame.loc[3, "label"] = None  # rows without a target are left out, with a notice
    table = StreamTable(_folder(tmp_path, frame, files=2, row_group=5))
    pre = TabularPreprocessor("label")
    with pytest.warns(DataWarning, match="Left out 1 of 30 rows whose target 'label'"):
        counts = fit_preprocessor(table, pre, valid_fraction=0.0, seed=0)
    assert counts == {"train": 29, "valid": 0} and pre.classes == labels
    source = StreamSource(table, pre, part="train", valid_fraction=0.0, split_seed=0)
    y = np.concatenate([y for _, y, _ in source.batches(0, batch_size=4, seed=None)])
    expected = pre.transform_target(frame["label"].drop(index=3))
    assert y.dtype == dtype and y.tolist() == expected.tolist()


def test_a_file_named_like_a_pattern_is_a_file(tmp_path):
    odd = tmp_path / "rows[1].parquet"
    _frame(5).to_parquet(odd)
    assert not stream.is_streamable(odd) and stream.is_streamable(tmp_path)
