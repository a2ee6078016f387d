"""Safe loading: files carrying code are refused, broken files give one clear error naming them."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import keras
import numpy as np
import pytest

import dlstructured
from dlstructured import ModelFileError, load_checkpoint, load_model


def _via_checkpoint_folder(path):
    folder = path.parent / f"{path.stem}-folder"  # the message names {stem}-folder/best.keras
    folder.mkdir(exist_ok=True)
    shutil.copyfile(path, folder / "best.keras")
    return load_checkpoint(folder)


LOADERS = {"load_model": load_model, "load_checkpoint": _via_checkpoint_folder}


@pytest.fixture(params=sorted(LOADERS))
def load(request):
    return LOADERS[request.param]


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "model.keras"
    dlstructured.dense_stack(2, hidden_units=(3,), seed=0).save(path)
    return path


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_members(path, members: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    path.write_bytes(buffer.getvalue())


def test_a_valid_file_loads_and_predicts(valid_file, load):
    model = load(valid_file)
    assert model.predict(np.ones((2, 2), "float32"), verbose=0).shape == (2, 1)


def test_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path, load):
    marker = tmp_path / "code-ran"
    target = str(marker)
    inputs = keras.Input((2,), name="features")
    payload = keras.layers.Lambda(
        lambda x: (__import__("pathlib").Path(target).write_text("ran"), x)[1], name="payload"
    )
    model = keras.Model(inputs, keras.layers.Dense(1, name="output")(payload(inputs)))
    marker.unlink()  # building the model ran the lambda once, here in the test
    path = tmp_path / "crafted.keras"
    model.save(path)
    assert b"Lambda" in _members(path)["config.json"]

    with pytest.raises(ModelFileError, match=r"Refused to load .*crafted[^']*\.keras.*Lambda"):
        load(path)
    assert not marker.exists()
    # Keras's own safe mode, which dlstructured keeps on, refuses it too.
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, refused_by_check",
    [
        ({"module": "os", "class_name": "system", "config": "touch pwned",
          "registered_name": "system"}, True),
        ({"module": "subprocess", "class_name": "Popen", "config": {"args": ["true"]},
          "registered_name": None}, True),
        ({"module": "builtins", "class_name": "function", "config": "print",
          "registered_name": "function"}, False),
    ],
)
def test_config_naming_foreign_code_is_refused(tmp_path, valid_file, load, payload,
                                               refused_by_check):
    members = _members(valid_file)
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["activation"] = payload
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "foreign.keras"
    _write_members(path, members)
    expected = r"foreign[^']*\.keras"
    if refused_by_check:
        expected = r"Refused to load .*" + expected
    with pytest.raises(ModelFileError, match=expected):
        load(path)


def _truncated(valid: bytes) -> bytes:
    return valid[: len(valid) // 2]


def _flipped_weights(valid_file) -> bytes:
    data = bytearray(valid_file.read_bytes())
    start = data.find(b"\x89HDF")  # inside the weights member: its checksum no longer matches
    for offset in range(start + 600, start + 700):
        data[offset] ^= 0xFF
    return bytes(data)


BROKEN = {
    "empty": lambda valid_file: b"",
    "text": lambda valid_file: b"this is not a model\n",
    "random_bytes": lambda valid_file: np.random.default_rng(0).bytes(4096),
    "truncated": lambda valid_file: _truncated(valid_file.read_bytes()),
    "truncated_to_header": lambda valid_file: valid_file.read_bytes()[:30],
    "corrupt_weights": _flipped_weights,
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_files_give_a_clear_error_naming_the_file(tmp_path, valid_file, load, kind):
    path = tmp_path / f"broken-{kind}.keras"
    path.write_bytes(BROKEN[kind](valid_file))
    with pytest.raises(ModelFileError, match=rf"broken-{kind}[^']*\.keras"):
        load(path)


@pytest.mark.parametrize(
    "members",
    [
        {"metadata.json": b"{}"},  # a zip, but no config.json
        {"config.json": b"{not json", "metadata.json": b"{}"},
        {"config.json": b"[1, 2, 3]", "metadata.json": b"{}"},
        {"config.json": json.dumps({"class_name": "Functional", "config": {}}).encode()},
    ],
    ids=["no_config", "bad_json", "config_not_a_dict", "config_without_layers"],
)
def test_zip_archives_that_are_not_models_give_a_clear_error(tmp_path, load, members):
    path = tmp_path / "not-a-model.keras"
    _write_members(path, members)
    with pytest.raises(ModelFileError, match=r"not-a-model[^']*\.keras"):
        load(path)


def test_missing_file_folder_and_wrong_type(tmp_path):
    with pytest.raises(ModelFileError, match=r"No model file at .*absent\.keras"):
        load_model(tmp_path / "absent.keras")
    with pytest.raises(ModelFileError, match="not a file"):
        load_model(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load_model(3)
