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
# # Lesson 1: a single neuron
#
# A linear unit computes `y = w0*x0 + ... + w(n-1)*x(n-1) + b`: one weight per input and a bias.
# It is the smallest network there is, and it can only draw a straight line (a flat plane) through
# the data. Here we build one with `linear_unit`, read its weights, train it, and look at its
# learning curves.
#
# Runs on scikit-learn's diabetes table by default; pass a CSV to use another, for example
# `python examples/01_single_neuron.py red-wine.csv --target quality`.

# %%
from _common import setup

import dlstructured as dls

run = setup("diabetes", "Lesson 1: a single neuron (linear unit).")

# %% [markdown]
# `prepare` scales the features to [0, 1], maps the target and splits off 30% of the rows for
# validation (seeded, so the split repeats).

# %%
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, seed=0)
model = dls.linear_unit(data, seed=0)
model.network.summary()

# %% [markdown]
# The weights before training are random; `w` has one entry per input feature, `b` is one number.

# %%
w, b = model.network.get_layer("output").get_weights()
print("w shape:", w.shape, " b:", b)

# %% [markdown]
# Train with Adam on the mean absolute error, the course's loss for regression.

# %%
result = dls.train(
    model,
    data,
    epochs=run.epochs(200),
    batch_size=32,
    learning_rate=0.01,
    early_stopping=False,
    seed=0,
    verbose=0,
)
w, b = model.network.get_layer("output").get_weights()
weights = dict(zip(data.feature_names, w[:, 0], strict=True))
for name in sorted(weights, key=lambda name: -abs(weights[name]))[:5]:
    print(f"{name:>12}: {weights[name]:+.3f}")
print("bias:", float(b[0]))
print("final metrics:", result.final_metrics)

# %%
figure = result.plot()
run.save(figure, "01_single_neuron")
figure  # noqa: B018 - a notebook shows the last value of a cell
