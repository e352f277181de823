"""The package version, in one place: ``__init__`` re-exports it and the upgrade
request's ``User-Agent`` carries it (a test keeps ``pyproject.toml`` equal)."""

from __future__ import annotations

__all__ = ("__version__",)

__version__ = "1.0.0.dev0"
