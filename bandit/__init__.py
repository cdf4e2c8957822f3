"""mab: a multi-armed-bandit experimentation service for ML model deployment."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
