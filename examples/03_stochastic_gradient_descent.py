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
# # Lesson 3: stochastic gradient descent
#
# Training repeats one small step many times: take a minibatch of rows, measure the loss (here
# the mean absolute error), and move every weight a little against the gradient of the loss. One
# pass over all training rows is an epoch. The learning rate sets the size of the steps and the
# batch size the number of rows per step; Adam adapts the step per weight, so its defaults work
# for most tables.

# %%
from _common import setup

import dlstructured as dls

run = setup("diabetes", "Lesson 3: stochastic gradient descent.")
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, seed=0)

# %% [markdown]
# The course's setting: Adam, batch size 256, a few epochs, learning curves from the history.

# %%
model = dls.dense_stack(data, hidden_units=(512, 512, 512), seed=0)
result = dls.train(
    model,
    data,
    epochs=run.epochs(10),
    batch_size=256,
    learning_rate=0.001,
    early_stopping=False,
    seed=0,
    verbose=0,
)
print(result.history.round(4))

# %% [markdown]
# Smaller batches take more (noisier) steps per epoch; a larger learning rate takes bigger ones.
# Each run below is seeded, so the comparison repeats.

# %%
for batch_size, learning_rate in [(256, 0.001), (32, 0.001), (32, 0.01)]:
    trial = dls.train(
        dls.dense_stack(data, hidden_units=(64, 64), seed=0),
        data,
        epochs=run.epochs(30),
        batch_size=batch_size,
        learning_rate=learning_rate,
        early_stopping=False,
        seed=0,
        verbose=0,
    )
    print(
        f"batch {batch_size:>3}, learning rate {learning_rate:<6}: "
        f"final val_loss {trial.final_metrics.get('val_loss'):.4f}"
    )

# %%
figure = result.plot()
run.save(figure, "03_stochastic_gradient_descent")
figure  # noqa: B018 - a notebook shows the last value of a cell
