"""nextbest: next-best-offer decisions for mobile operators' front line."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
