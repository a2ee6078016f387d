# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 5: dropout and batch normalization
#
# **Dropout** switches off a random fraction of a layer's outputs at each training step, so the
# network cannot lean on a few lucky units and overfits less. **Batch normalization** rescales a
# layer's outputs to a steady mean and spread over each minibatch; it makes training less
# sensitive to the scale of the inputs and to the learning rate. Both are switches on the
# builders.

# %%
from _common import setup

import dlstructured as dls

run = setup("diabetes", "Lesson 5: dropout and batch normalization.")
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, seed=0)

# %% [markdown]
# The course's network with both: three blocks of `Dense(1024, relu)`, `Dropout(0.3)`,
# `BatchNormalization()`.

# %%
model = dls.dense_stack(
    data,
    hidden_units=(1024, 1024, 1024),
    dropout_rate=0.3,
    batch_norm=True,
    batch_norm_position="after_dropout",
    seed=0,
)
print([layer.name for layer in model.network.layers])
result = dls.train(model, data, epochs=run.epochs(100), seed=0, verbose=0)
print("best epoch", result.best_epoch, "val_loss", result.best_metrics.get("val_loss"))

# %% [markdown]
# Batch normalization of the raw inputs lets a network train on unscaled numbers. Below, the raw
# columns (no `prepare`, no scaling) go straight to `train` with plain SGD and the squared error,
# whose gradients grow with the size of the numbers. Without batch normalization the loss blows
# up within the first epoch, and `train` reports the divergence instead of failing; with it, the
# same network trains.

# %%
features = run.frame.drop(columns=run.target).select_dtypes("number")
x = features.to_numpy("float32")
y = run.frame[run.target].to_numpy("float32")
for normalize in (False, True):
    raw_model = dls.dense_stack(
        x.shape[1],
        hidden_units=(512, 512, 512),
        input_batch_norm=normalize,
        batch_norm=normalize,
        seed=0,
    )
    raw = dls.train(
        raw_model,
        x,
        y,
        task="regression",
        valid_fraction=0.3,
        optimizer="sgd",
        loss="mse",
        epochs=run.epochs(30),
        batch_size=64,
        early_stopping=False,
        seed=0,
        verbose=0,
    )
    if raw.diverged:
        print(f"batch norm {normalize!s:>5}: diverged at epoch {raw.diverged_epoch}")
    else:
        print(
            f"batch norm {normalize!s:>5}: trained, best val_mae {raw.best_metrics['val_mae']:.1f}"
        )

# %%
figure = result.plot()
run.save(figure, "05_dropout_and_batch_normalization")
figure  # noqa: B018 - a notebook shows the last value of a cell
