"""The tenant's workflow: SDL -> order -> bids -> lease -> manifest (DESIGN.md §1).

``plan`` holds the pure steps (SDL preparation, bid screening and selection, JSON
renderings); ``service.TenantService`` is the trio service inside the tenant's node that
the node API (``p2pakash.api.tenant_routes``) and the CLI (``deploy``, ``lease``) drive.
"""

from __future__ import annotations

from p2pakash.tenant.plan import TenantError
from p2pakash.tenant.service import DeployRun, TenantParams, TenantService

__all__ = ["DeployRun", "TenantError", "TenantParams", "TenantService"]
