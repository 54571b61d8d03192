"""The live dashboard: static HTML, JS and CSS in ``static/``, served by the library (no CDN)."""

from __future__ import annotations

from taskflow.dashboard.routes import build_dashboard_router

__all__ = ["build_dashboard_router"]
