"""A griffe extension for the API reference: Sphinx roles become Markdown code.

The docstrings are written for ``help()`` and for reading in the source, with the
occasional Sphinx role (``:class:`Shard```); on the site those read as plain code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Turn ``:role:`target``` into ``target`` in code style."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
