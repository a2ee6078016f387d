"""Learning-curve plots, drawn without pyplot so no global matplotlib state changes."""

from __future__ import annotations

from typing import Any

import pandas as pd

_ACCURACY_COLUMNS = ("binary_accuracy", "accuracy")


def plot_history(
    history: pd.DataFrame,
    *,
    task: str = "regression",
    title: str | None = None,
    best_epoch: int | None = None,
) -> Any:
    """Draw learning curves: training and validation loss, and accuracy for classifiers.

    Args:
        history: A training history, one row per epoch (``TrainingResult.history``).
        task: The task; classifiers get a second panel with accuracy. Defaults to
            ``"regression"``.
        title: Title of the figure. Defaults to ``None``.
        best_epoch: Epoch to mark with a vertical line. Defaults to ``None``.

    Returns:
        A ``matplotlib.figure.Figure``; save it with ``fig.savefig("curves.png")``.

    Raises:
        ValueError: If ``history`` has no ``loss`` column.

    Example:

    >>> import pandas as pd
    >>> from dlstructured import plot_history
    >>> history = pd.DataFrame({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.6, 0.55]})
    >>> fig = plot_history(history)
    >>> [axis.get_ylabel() for axis in fig.axes]
    ['loss']
    """
    from matplotlib.figure import Figure

    if "loss" not in history.columns:
        raise ValueError(
            f"`history` must have a 'loss' column. Received columns: {list(history.columns)}"
        )
    accuracy = next((c for c in _ACCURACY_COLUMNS if c in history.columns), None)
    panels = [("loss", "loss")]
    if task != "regression" and accuracy is not None:
        panels.append((accuracy, "accuracy"))
    fig = Figure(figsize=(5.5 * len(panels), 3.8), layout="constrained")
    epochs = range(1, len(history) + 1)
    for index, (column, label) in enumerate(panels, start=1):
        axis = fig.add_subplot(1, len(panels), index)
        axis.plot(epochs, history[column].to_numpy(), label="training")
        if f"val_{column}" in history.columns:
            axis.plot(epochs, history[f"val_{column}"].to_numpy(), label="validation")
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label="best epoch")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        fig.suptitle(title)
    return fig
