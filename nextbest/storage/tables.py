"""Every table module, imported so that Base.metadata knows them all (create_schema, migrations).

A new domain with its own tables adds its module here.
"""

from __future__ import annotations

from nextbest.storage import campaign_models, models, report_models, security_models

__all__ = ["campaign_models", "models", "report_models", "security_models"]
