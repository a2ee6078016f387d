"""The one progress display of training: a Keras callback that draws a bar over the epochs.

``train(verbose=1)``, ``dlstructured.fit_table`` and the command line all show it. On a
terminal the bar redraws in place; elsewhere (a log file, a pipe) it prints the first epoch and
then one line per tenth of the epochs, so a log stays short. ``verbose=2`` prints every epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import keras

BAR_WIDTH = 24


class EpochProgress(keras.callbacks.Callback):
    """Draw ``epoch 3/200  [###.....]  loss 0.4120  val_loss 0.4512  2s`` as training goes.

    Args:
        epochs: The most epochs of the run (the bar's end).
        every_epoch: Print a line for every epoch instead of redrawing a bar on a terminal or
            printing a tenth of the epochs elsewhere. Defaults to ``False``.
        loss_scale: Factor that turns the logged losses into the target's units (a regression
            network trains on a scaled target). Defaults to ``1.0``.
        heading: A line to print when training begins (what is trained), or ``None``.
            Defaults to ``None``.
        stream: Where to draw. Defaults to ``None`` (standard error at the start of training).
    """

    def __init__(
        self,
        epochs: int,
        *,
        every_epoch: bool = False,
        loss_scale: float = 1.0,
        heading: str | None = None,
        stream: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.every_epoch = every_epoch
        self.loss_scale = loss_scale
        self.heading = heading
        self.stream = stream
        self.live = False
        self.every = 1 if every_epoch else max(1, epochs // 10)
        self.started = 0.0
        self.last_line = ""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.stream is None:
            self.stream = sys.stderr
        self.live = not self.every_epoch and bool(getattr(self.stream, "isatty", bool)())
        self.started = time.perf_counter()
        self.last_line = ""
        if self.heading:
            self.stream.write(self.heading + "\n")
            self.stream.flush()

    def line(self, done: int, logs: dict[str, Any]) -> str:
        """The text shown after ``done`` epochs with these ``logs``."""
        filled = min(BAR_WIDTH, round(BAR_WIDTH * done / self.epochs))
        parts = [f"epoch {done:>{len(str(self.epochs))}}/{self.epochs}"]
        parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        for key in ("loss", "val_loss"):
            if key in logs:
                parts.append(f"{key} {float(logs[key]) * self.loss_scale:.4f}")
        parts.append(f"{time.perf_counter() - self.started:.0f}s")
        return "  ".join(parts)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1
        line = self.line(done, logs or {})
        if self.live:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
        elif done == 1 or done % self.every == 0 or done == self.epochs:
            self.stream.write(line + "\n")
            self.stream.flush()
        self.last_line = line

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.live and self.last_line:
            self.stream.write("\n")
            self.stream.flush()
