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
# # Lesson 6: binary classification
#
# To sort rows into two classes, the network ends in one sigmoid unit whose output is the
# probability of the positive class, and trains on the cross-entropy, which punishes confident
# wrong answers hard. Accuracy (the share of right answers at a 0.5 threshold) is what we read,
# but it cannot be trained on directly because it changes in jumps.
#
# Runs on scikit-learn's breast-cancer table (labels `"malignant"` and `"benign"`) by default,
# or for example `python examples/06_binary_classification.py ion.csv --target Class`.

# %%
from _common import setup

import dlstructured as dls

run = setup("breast_cancer", "Lesson 6: binary classification.")
data = dls.prepare(run.frame, run.target, valid_fraction=0.3, split="stratified", seed=0)
print("task:", data.task)

# %% [markdown]
# The course's classifier: two hidden layers of 4 ReLU units and a sigmoid output, trained with
# Adam, binary cross-entropy and early stopping (patience 10, min_delta 0.001).

# %%
model = dls.binary_classifier(data, hidden_units=(4, 4), seed=0)
stopper = dls.EarlyStopping(patience=10, min_delta=0.001, restore_best_weights=True)
result = dls.train(
    model, data, epochs=run.epochs(1000), batch_size=512, early_stopping=stopper, seed=0, verbose=0
)
print("best epoch", result.best_epoch, "metrics", result.best_metrics)

# %% [markdown]
# The trained model takes raw rows and answers with the original labels, or probabilities.

# %%
rows = run.frame.drop(columns=run.target).sample(5, random_state=0)
print(model.predict(rows))
print(model.predict_proba(rows))

# %%
figure = result.plot()
run.save(figure, "06_binary_classification")
figure  # noqa: B018 - a notebook shows the last value of a cell
