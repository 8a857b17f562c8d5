"""Every table module, imported so that Base.metadata knows them all (create_schema, migrations).

A new domain with its own tables adds its module here.
"""

from __future__ import annotations

from nextbest.storage import models

__all__ = ["models"]
