"""Griffe extension: read Keras-style ``Example:`` sections in the API reference.

The docstrings follow Keras's layout, where the doctest lines after ``Example:`` start at the
same indentation as the heading (so they read naturally in ``help()`` and run as doctests).
Google-style parsing expects section content indented under its heading; this extension indents
everything after an ``Example:`` or ``Examples:`` heading (the last section by convention), so
the reference renders it as code instead of as text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(Example|Examples):\s*$")


def indent_examples(text: str) -> str:
    """Indent the lines after an ``Example:`` heading by four spaces."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _HEADING.match(line):
            body = lines[index + 1 :]
            if any(part.strip() and not part.startswith("    ") for part in body):
                lines[index + 1 :] = [f"    {part}" if part.strip() else part for part in body]
            break
    return "\n".join(lines)


class KerasStyleExamples(griffe.Extension):
    """Indent the content of ``Example:`` sections before the docstring is parsed."""

    def on_object(self, *, obj: Any, loader: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = indent_examples(obj.docstring.value)
