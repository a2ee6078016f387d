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
# # Lesson 4: overfitting and underfitting
#
# The training loss keeps falling as long as the network can memorise the training rows; the
# validation loss falls only while it learns something that carries over. A model **underfits**
# when both losses stay high (too little capacity, or too little training) and **overfits** when
# the validation loss turns up while the training loss keeps falling. Early stopping watches the
# validation loss and keeps the weights of its best epoch.

# %%
from _common import setup

import dlstructured as dls

run = setup("diabetes", "Lesson 4: overfitting and underfitting.")
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, seed=0)
epochs = run.epochs(300)

# %% [markdown]
# Too little capacity: a linear unit.

# %%
small = dls.train(
    dls.linear_unit(data, seed=0),
    data,
    epochs=epochs,
    learning_rate=0.01,
    early_stopping=False,
    seed=0,
    verbose=0,
)
print("linear unit:  best val_loss", small.best_metrics.get("val_loss"))

# %% [markdown]
# Plenty of capacity and no early stopping: the gap between the curves grows.

# %%
big = dls.train(
    dls.dense_stack(data, hidden_units=(512, 512, 512), seed=0),
    data,
    epochs=epochs,
    early_stopping=False,
    seed=0,
    verbose=0,
)
print("ReLU stack:   best epoch", big.best_epoch, "of", big.epochs_run)

# %% [markdown]
# The same network with early stopping, the course's way: stop when the validation loss has not
# improved by at least 0.001 for 5 epochs, and restore the best weights.

# %%
stopper = dls.EarlyStopping(patience=5, min_delta=0.001, restore_best_weights=True)
stopped = dls.train(
    dls.dense_stack(data, hidden_units=(512, 512, 512), seed=0),
    data,
    epochs=epochs,
    early_stopping=stopper,
    seed=0,
    verbose=0,
)
print(
    "early stopping: ran",
    stopped.epochs_run,
    "epochs, best epoch",
    stopped.best_epoch,
    "val_loss",
    stopped.best_metrics.get("val_loss"),
)

# %%
run.save(big.plot(), "04_overfitting")
figure = stopped.plot()
run.save(figure, "04_early_stopping")
figure  # noqa: B018 - a notebook shows the last value of a cell
