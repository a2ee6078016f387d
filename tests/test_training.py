"""The shared training wrapper: real learning on tiny data, early stopping, history, errors."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from dlstructured import (
    EarlyStopping,
    binary_classifier,
    dense_stack,
    linear_unit,
    multiclass_classifier,
    train,
)
from dlstructured.training.loop import TrainingDivergedWarning, TrainingInterruptedWarning


@pytest.fixture
def line(rng):
    x = rng.uniform(-1, 1, size=(200, 1)).astype("float32")
    return x, 3 * x[:, 0] + 2


def test_linear_unit_recovers_w_and_b(line):
    x, y = line
    result = train(
        linear_unit(1, seed=0),
        x,
        y,
        epochs=150,
        batch_size=32,
        learning_rate=0.05,
        early_stopping=False,
        seed=0,
    )
    w, b = result.model.get_layer("output").get_weights()
    assert abs(float(w[0, 0]) - 3.0) < 0.05
    assert abs(float(b[0]) - 2.0) < 0.05


def test_relu_stack_fits_what_a_linear_unit_cannot(rng):
    x = rng.uniform(-2, 2, size=(256, 1)).astype("float32")
    y = np.abs(x[:, 0]) + 0.5 * np.sin(3 * x[:, 0])
    kwargs = dict(epochs=60, batch_size=32, learning_rate=0.01, early_stopping=False, seed=0)
    linear = train(linear_unit(1, seed=0), x, y, **kwargs)
    deep = train(dense_stack(1, hidden_units=(32, 32), seed=0), x, y, **kwargs)
    assert deep.final_metrics["loss"] < 0.5 * linear.final_metrics["loss"]


def test_sigmoid_classifier_separates_a_separable_problem(rng):
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    result = train(
        binary_classifier(2, hidden_units=(8,), seed=0),
        x,
        y,
        epochs=40,
        batch_size=32,
        learning_rate=0.02,
        valid_fraction=0.25,
        seed=0,
    )
    assert result.task == "binary"
    assert list(result.history.columns) == [
        "auc",
        "binary_accuracy",
        "loss",
        "val_auc",
        "val_binary_accuracy",
        "val_loss",
    ]
    assert result.best_metrics["val_binary_accuracy"] > 0.95


def test_multiclass_training_reports_accuracy(rng):
    x = rng.normal(size=(240, 2)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    result = train(
        multiclass_classifier(2, num_classes=3, hidden_units=(16,), seed=0),
        x,
        y,
        epochs=40,
        batch_size=32,
        learning_rate=0.02,
        seed=0,
        valid_fraction=0.25,
    )
    assert result.task == "multiclass"
    assert result.best_metrics["val_accuracy"] > 0.85


def test_early_stopping_stops_and_restores_the_best_weights(line):
    x, y = line
    x_valid = x[:50]
    y_valid = -3 * x_valid[:, 0] + 2  # gets worse as the model learns the training line
    model = linear_unit(1, seed=0)
    result = train(
        model,
        x,
        y,
        validation_data=(x_valid, y_valid),
        epochs=200,
        batch_size=32,
        learning_rate=0.05,
        early_stopping=EarlyStopping(patience=3),
        seed=0,
    )
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 3 < 200
    restored = float(np.mean(np.abs(model.predict(x_valid, verbose=0)[:, 0] - y_valid)))
    assert restored == pytest.approx(result.history["val_loss"].min(), rel=1e-4)
    assert restored < result.history["val_loss"].iloc[-1]


@pytest.mark.parametrize(
    "losses, stopped_after, best",
    [
        # The best came in the first cycle (epochs 1-2): the review at epoch 4 stops.
        ([5, 1, 2, 3, 0.5, 0.4, 0.3, 0.2], 4, 2),
        # The second cycle improved (epoch 3), the third did not: the review at 6 stops.
        ([5, 4, 3, 3.5, 4, 4, 0.1, 0.1], 6, 3),
        # Every cycle improved: the whole budget runs.
        ([5, 4, 3, 3.5, 2, 4, 1, 0.5], 8, 8),
    ],
)
def test_review_epochs_stop_after_a_span_that_improved_nothing(losses, stopped_after, best):
    from dlstructured.training.loop import _Monitor

    # The monitor every engine calls after each epoch, given these validation losses.
    network = linear_unit(1, seed=0)
    watcher = _Monitor("val_loss", "min", EarlyStopping(patience=8, min_delta=0.0,
                                                        review_epochs=(2, 4, 6)))
    watcher.set_model(network)
    network.stop_training = False
    for epoch, loss in enumerate(losses):
        watcher.on_epoch_end(epoch, {"loss": 1.0, "val_loss": loss})
        if network.stop_training:
            break
    assert (watcher.state.epoch, watcher.state.best_epoch) == (stopped_after, best)
    assert watcher.state.stopped_early == (stopped_after < 8)


@pytest.mark.parametrize("reviews, error", [((3, 2), ValueError), ((0, 4), ValueError),
                                            ([1.5], TypeError), (5, TypeError)])
def test_review_epochs_must_be_increasing_epochs(reviews, error):
    with pytest.raises(error, match="review_epochs"):
        EarlyStopping(review_epochs=reviews)


def test_history_has_one_row_per_epoch_and_loss_columns(line):
    x, y = line
    result = train(
        linear_unit(1, seed=0), x, y, epochs=7, valid_fraction=0.2, early_stopping=False, seed=0
    )
    history = result.history
    assert len(history) == result.epochs_run == 7
    assert list(history.index) == list(range(1, 8))
    assert list(history.columns) == ["loss", "mae", "val_loss", "val_mae"]
    assert result.final_metrics == {k: float(v) for k, v in history.iloc[-1].items()}
    assert result.best_metrics["val_loss"] == history["val_loss"].min()
    assert result.fit_time > 0 and result.wall_time >= result.fit_time


def test_dataframe_and_series_inputs(line):
    x, y = line
    frame = pd.DataFrame({"x": x[:, 0]})
    result = train(linear_unit(1, seed=0), frame, pd.Series(y), epochs=2, seed=0)
    assert result.epochs_run == 2


def test_divergence_stops_keeps_finite_weights_and_warns(rng):
    x = rng.uniform(0, 1e4, size=(128, 3)).astype("float32")
    y = x.sum(axis=1) * 1e3
    model = dense_stack(3, hidden_units=(16,), seed=0)
    with pytest.warns(TrainingDivergedWarning, match=r"diverged at epoch \d+.*scale the inputs"):
        result = train(
            model,
            x,
            y,
            optimizer="sgd",
            learning_rate=10.0,
            loss="mse",
            epochs=50,
            early_stopping=False,
            seed=0,
        )
    assert result.diverged and result.diverged_epoch is not None
    assert result.epochs_run == result.diverged_epoch < 50
    assert all(np.isfinite(w).all() for w in model.get_weights())


class _InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_returns_the_result_so_far(line):
    x, y = line
    with pytest.warns(TrainingInterruptedWarning, match="interrupted at epoch 3"):
        result = train(linear_unit(1, seed=0), x, y, epochs=20, callbacks=[_InterruptAt(3)], seed=0)
    assert result.interrupted and result.interrupted_epoch == 3
    assert result.epochs_run == 3


def test_ctrl_c_can_be_re_raised(line):
    x, y = line
    with pytest.raises(KeyboardInterrupt):
        train(
            linear_unit(1, seed=0),
            x,
            y,
            epochs=20,
            callbacks=[_InterruptAt(2)],
            on_interrupt="raise",
        )


def test_user_callbacks_pass_through_and_change_the_learning_rate(line):
    x, y = line
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(
                (
                    epoch,
                    float(
                        keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
                        if getattr(self.model, "optimizer", None)
                        else -1
                    ),
                )
            )

    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch < 2 else 0.0)
    model = linear_unit(1, seed=0)
    result = train(
        model, x, y, epochs=4, callbacks=[schedule, Record()], early_stopping=False, seed=0
    )
    assert [epoch for epoch, _ in seen] == [0, 1, 2, 3]
    # With a zero learning rate from epoch 3 on, the weights stop moving.
    assert result.history["loss"].iloc[3] == pytest.approx(result.history["loss"].iloc[2], abs=1e-6)


def test_same_seed_same_history_with_dropout(rng):
    x = rng.normal(size=(96, 4)).astype("float32")
    y = x.sum(axis=1)

    def run(seed):
        model = dense_stack(4, hidden_units=(16,), dropout_rate=0.5, seed=1)
        return train(model, x, y, epochs=4, batch_size=16, seed=seed, early_stopping=False)

    first, second, other = run(7), run(7), run(8)
    pd.testing.assert_frame_equal(first.history, second.history)
    assert not first.history.equals(other.history)


def test_sample_weights_and_class_weight_errors(rng):
    x = rng.normal(size=(120, 2)).astype("float32")
    y = (x[:, 0] > 1.0).astype("float32")  # rare positives
    model = binary_classifier(2, hidden_units=(8,), seed=0)
    with pytest.raises(ValueError, match="no weight for classes"):
        train(model, x, y, epochs=1, class_weight={0: 1.0})
    with pytest.raises(ValueError, match="sample_weight"):
        train(model, x, y, epochs=1, sample_weight=np.ones(3))
    zero = train(
        binary_classifier(2, hidden_units=(8,), seed=0),
        x,
        y,
        epochs=2,
        sample_weight=np.zeros(len(x)),
        early_stopping=False,
        seed=0,
    )
    assert zero.history["loss"].abs().max() == pytest.approx(0.0, abs=1e-7)


ENGINES_HERE = ["keras"] + (["jax"] if keras.backend.backend() == "jax" else [])


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_balanced_class_weight_lifts_minority_recall(rng, engine):
    """On a 90/10 problem with overlapping classes, unweighted training predicts the majority."""
    y = (rng.uniform(size=400) < 0.1).astype("float32")
    x = rng.normal(size=(400, 2)).astype("float32")
    x[:, 0] += y  # positives sit one standard deviation to the right: the classes overlap
    kwargs = dict(epochs=10, batch_size=32, learning_rate=0.02, early_stopping=False, seed=0,
                  engine=engine)

    def minority_recall(class_weight):
        model = binary_classifier(2, hidden_units=(4,), seed=0)
        train(model, x, y, class_weight=class_weight, **kwargs)
        probabilities = model.predict(x, verbose=0)[:, 0]
        return float(np.mean(probabilities[y == 1] > 0.5))

    plain, balanced = minority_recall(None), minority_recall("balanced")
    assert plain < 0.2
    assert balanced > 0.6


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_chosen_metrics_are_the_history_columns_and_measure_the_model(rng, engine):
    x = rng.normal(size=(120, 2)).astype("float32")
    y = (x[:, 0] - x[:, 1] > 0).astype("float32")
    x_valid = rng.normal(size=(50, 2)).astype("float32")
    y_valid = (x_valid[:, 0] - x_valid[:, 1] > 0).astype("float32")
    result = train(
        binary_classifier(2, hidden_units=(4,), seed=0),
        x,
        y,
        validation_data=(x_valid, y_valid),
        metrics=["binary_accuracy", "mse"],
        epochs=3,
        batch_size=32,
        early_stopping=False,
        seed=0,
        engine=engine,
    )
    assert list(result.history.columns) == [
        "binary_accuracy", "loss", "mse", "val_binary_accuracy", "val_loss", "val_mse"
    ]
    # Validation metrics are measured on the final weights: recompute them from predictions.
    probability = result.model.predict(x_valid, verbose=0)[:, 0]
    final = result.final_metrics
    assert final["val_binary_accuracy"] == pytest.approx(
        np.mean((probability > 0.5) == y_valid), abs=1e-6
    )
    assert final["val_mse"] == pytest.approx(np.mean((probability - y_valid) ** 2), rel=1e-4)


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_no_metrics_leaves_the_loss_alone_and_accuracy_follows_the_task(rng, engine):
    x = rng.normal(size=(60, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    x_valid, y_valid = x[:15], y[:15]
    kwargs = dict(epochs=2, early_stopping=False, seed=0, validation_data=(x_valid, y_valid),
                  engine=engine)
    bare = train(binary_classifier(2, hidden_units=(4,), seed=0), x, y, metrics=[], **kwargs)
    assert list(bare.history.columns) == ["loss", "val_loss"]
    model = binary_classifier(2, hidden_units=(4,), seed=0)
    named = train(model, x, y, metrics=["accuracy"], **kwargs)
    assert list(named.history.columns) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    # "accuracy" is binary accuracy here: thresholded probabilities, not exact equality.
    probability = model.predict(x_valid, verbose=0)[:, 0]
    assert named.final_metrics["val_accuracy"] == pytest.approx(
        np.mean((probability > 0.5) == y_valid), abs=1e-6
    )


@pytest.mark.parametrize(
    "metrics, error, match",
    [
        ("mae", TypeError, "must be a list"),
        (["no_such_metric"], ValueError, "no_such_metric"),
        (["mae", "mae"], ValueError, "repeated"),
        (["accuracy"], ValueError, "classification task"),
        ([3], ValueError, "3 \\(int\\)"),
    ],
)
def test_bad_metrics_name_the_problem(line, metrics, error, match):
    x, y = line
    with pytest.raises(error, match=match):
        train(linear_unit(1), x, y, metrics=metrics, epochs=1)


def test_task_precedence_explicit_wins_over_output_activation(rng):
    x = rng.normal(size=(40, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = dense_stack(2, hidden_units=(4,))
    assert train(model, x, y, epochs=1).task == "regression"
    assert train(binary_classifier(2, hidden_units=(4,)), x, y, epochs=1).task == "binary"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": "64"}, "batch_size"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"early_stopping": "yes"}, "early_stopping"),
        ({"optimizer": "no_such_optimizer"}, "optimizer"),
        ({"valid_fraction": 1.5}, "valid_fraction"),
        ({"task": "ranking"}, "task"),
        ({"engine": "torch"}, "engine"),
        ({"verbose": 3}, "verbose"),
        ({"seed": "1"}, "seed"),
        ({"callbacks": ["not a callback"]}, "callbacks"),
    ],
)
def test_bad_training_arguments_name_themselves(line, kwargs, match):
    x, y = line
    with pytest.raises((TypeError, ValueError), match=match):
        train(linear_unit(1), x, y, **kwargs)


def test_bad_data_is_refused_clearly(line):
    x, y = line
    model = linear_unit(1)
    with pytest.raises(ValueError, match="rows"):
        train(model, x, y[:10])
    with pytest.raises(ValueError, match="NaN"):
        train(model, np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="expects 1 features"):
        train(model, np.zeros((10, 3), "float32"), np.zeros(10))
    with pytest.raises(ValueError, match="0/1"):
        train(binary_classifier(1, hidden_units=(2,)), x, y)
    with pytest.raises(TypeError, match="model"):
        train("model", x, y)
    with pytest.raises(TypeError, match="non-numeric"):
        train(model, pd.DataFrame({"a": ["x"] * 5}), np.zeros(5))


@pytest.mark.parametrize(
    ("codes", "model_classes", "match"),
    [
        ([0.0, 1.5, 2.0, 0.0], 3, r"class codes 0, 1, 2.*1\.5"),
        ([0, -1, 1, 0], 3, r"class codes 0, 1, 2.*-1"),
        ([0, 1, 2, 3], 3, r"class code 3, but the model has 3 output unit\(s\).*num_classes=4"),
        ([0, 2, 1, 0], None, r"class code 2, but the model has 1 output unit\(s\)"),
    ],
)
def test_multiclass_targets_must_be_codes_the_model_can_output(codes, model_classes, match):
    # Out-of-range codes failed deep inside TensorFlow's loss (and silently on JAX); fractions
    # were truncated to whole codes.
    x = np.linspace(-1, 1, 16, dtype="float32").reshape(-1, 2)[:4]
    model = (
        linear_unit(2) if model_classes is None
        else multiclass_classifier(2, num_classes=model_classes, hidden_units=(), seed=0)
    )
    with pytest.raises(ValueError, match=match):
        train(model, x, np.array(codes), task="multiclass", epochs=1)
    with pytest.raises(ValueError, match=r"validation_data\[1\]"):
        train(model, x, np.zeros(4), task="multiclass", epochs=1,
              validation_data=(x, np.array(codes)))


def test_validation_data_of_the_wrong_width_names_the_argument():
    x = np.zeros((8, 2), "float32")
    with pytest.raises(ValueError, match="validation_data.*Received"):
        train(linear_unit(2, seed=0), x, np.zeros(8), epochs=1,
              validation_data=(x[:4, :1], np.zeros(4)))


def test_plot_draws_loss_and_accuracy_panels(rng):
    x = rng.normal(size=(60, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    result = train(
        binary_classifier(2, hidden_units=(4,), seed=0), x, y, epochs=3, valid_fraction=0.3, seed=0
    )
    fig = result.plot(title="curves")
    assert [axis.get_ylabel() for axis in fig.axes] == ["loss", "accuracy"]
    assert fig.get_suptitle() == "curves"
    for axis in fig.axes:
        assert [line.get_label() for line in axis.lines] == ["training", "validation",
                                                              "best epoch"]
    training, validation, best = fig.axes[0].lines
    np.testing.assert_array_equal(training.get_ydata(), result.history["loss"].to_numpy())
    np.testing.assert_array_equal(validation.get_ydata(), result.history["val_loss"].to_numpy())
    assert list(best.get_xdata()) == [result.best_epoch] * 2
    np.testing.assert_array_equal(fig.axes[1].lines[1].get_ydata(),
                                  result.history["val_binary_accuracy"].to_numpy())


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data input path")
def test_tensorflow_input_pipeline_epochs_are_permutations_and_resume_alike():
    from dlstructured.training import _engine_keras

    x = np.arange(10, dtype="float32").reshape(10, 1)
    y = np.arange(10, dtype="float32")

    def epochs_of(initial_epoch):
        pipeline = _engine_keras._tensorflow_batches(x, y, None, 4, 7, initial_epoch, 3)
        # No autotuning thread: destroying its iterator waited for it, seconds at a time.
        assert pipeline.options().autotune.enabled is False
        rows = np.concatenate([batch_x.numpy()[:, 0] for batch_x, _ in pipeline]).astype(int)
        return rows.reshape(-1, 10)

    epochs = epochs_of(0)
    assert epochs.shape == (3, 10)
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3  # a new order each epoch
    np.testing.assert_array_equal(epochs_of(1), epochs[1:])  # a resumed run sees the same
    np.testing.assert_array_equal(epochs_of(0), epochs)  # and so does a second run
