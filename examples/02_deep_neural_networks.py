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
# # Lesson 2: deep neural networks
#
# Stacking layers of units, with a nonlinear activation such as ReLU between them, lets a network
# bend its prediction to fit curved relationships that a single linear unit cannot. `dense_stack`
# builds such a stack: `hidden_units` sets the width of each hidden layer and, by its length, the
# depth; the output unit stays linear for regression.

# %%
from _common import setup

import dlstructured as dls

run = setup("diabetes", "Lesson 2: deep neural networks (a ReLU stack).")
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, seed=0)

# %% [markdown]
# The course's network: three hidden layers of 512 ReLU units and one linear output.

# %%
model = dls.dense_stack(data, hidden_units=(512, 512, 512), activation="relu", seed=0)
model.network.summary()

# %% [markdown]
# Any Keras activation works, for example `"elu"`, `"selu"`, `"gelu"` or `"swish"`:

# %%
for activation in ("relu", "elu", "swish"):
    candidate = dls.dense_stack(data, hidden_units=(32, 32), activation=activation, seed=0)
    print(activation, candidate.network.get_layer("block_1_dense").get_config()["activation"])

# %% [markdown]
# Train the ReLU stack and compare with the single neuron of lesson 1.

# %%
deep = dls.train(model, data, epochs=run.epochs(100), seed=0, verbose=0)
linear = dls.train(
    dls.linear_unit(data, seed=0),
    data,
    epochs=run.epochs(100),
    learning_rate=0.01,
    seed=0,
    verbose=0,
)
print("linear unit, best val_loss:", linear.best_metrics.get("val_loss"))
print("ReLU stack,  best val_loss:", deep.best_metrics.get("val_loss"))

# %%
figure = deep.plot()
run.save(figure, "02_deep_neural_networks")
figure  # noqa: B018 - a notebook shows the last value of a cell
