"""Custom Keras layers saved inside dlstructured models.

Each is registered under the ``dlstructured`` package name, so after ``import dlstructured`` a
saved model loads with plain ``keras.saving.load_model`` in safe mode: the file holds only
configuration and weights, never code.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from dlstructured.models.initializers import HostInitializer


@keras.saving.register_keras_serializable(package="dlstructured")
class CategoryEmbedding(keras.layers.Layer):
    """Replace integer-coded categorical columns of a feature matrix by learned embeddings.

    The input is one float matrix (prepared features). The columns listed in
    ``column_indices`` hold category codes (``0 .. input_dim - 1``); each is looked up in its own
    embedding table. The output is the remaining numeric columns followed by the embeddings.

    Args:
        column_indices: Positions of the coded columns in the input matrix.
        input_dims: Number of codes per coded column (categories, plus the missing and unknown
            slots).
        output_dims: Embedding width per coded column.
        seed: Seed of the embedding initializers. Defaults to `None` (unseeded).

    Example:

    >>> import numpy as np
    >>> layer = CategoryEmbedding([1], [5], [3], seed=0)
    >>> tuple(layer(np.array([[0.5, 4.0], [0.1, 0.0]], dtype="float32")).shape)
    (2, 4)
    """

    def __init__(
        self,
        column_indices: Sequence[int],
        input_dims: Sequence[int],
        output_dims: Sequence[int],
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not (len(column_indices) == len(input_dims) == len(output_dims)):
            raise ValueError(
                "`column_indices`, `input_dims` and `output_dims` must have the same length. "
                f"Received lengths {len(column_indices)}, {len(input_dims)}, {len(output_dims)}"
            )
        self.column_indices = [int(i) for i in column_indices]
        self.input_dims = [int(d) for d in input_dims]
        self.output_dims = [int(d) for d in output_dims]
        self.seed = seed
        self.tables = [
            keras.layers.Embedding(
                input_dim,
                output_dim,
                embeddings_initializer=HostInitializer(
                    "uniform", None if seed is None else seed + k, low=-0.05, high=0.05
                ),
                name=f"table_{k}",
            )
            for k, (input_dim, output_dim) in enumerate(
                zip(self.input_dims, self.output_dims, strict=True)
            )
        ]

    def build(self, input_shape):
        num_columns = int(input_shape[-1])
        coded = set(self.column_indices)
        self._numeric_indices = [i for i in range(num_columns) if i not in coded]
        for table in self.tables:
            table.build((None,))

    def call(self, inputs):
        parts = []
        if self._numeric_indices:
            parts.append(ops.take(inputs, self._numeric_indices, axis=1))
        for index, table, input_dim in zip(
            self.column_indices, self.tables, self.input_dims, strict=True
        ):
            codes = ops.cast(inputs[:, index], "int32")
            codes = ops.clip(codes, 0, input_dim - 1)
            parts.append(table(codes))
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def compute_output_shape(self, input_shape):
        num_numeric = int(input_shape[-1]) - len(self.column_indices)
        return (input_shape[0], num_numeric + sum(self.output_dims))

    def get_config(self):
        config = super().get_config()
        config.update(
            column_indices=self.column_indices,
            input_dims=self.input_dims,
            output_dims=self.output_dims,
            seed=self.seed,
        )
        return config
