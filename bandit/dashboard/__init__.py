"""The live dashboard: its routes and event streams, the stats cache they share, the sampler that
writes P(best) into the history, and the pages' static files (`static/`)."""

from __future__ import annotations

from bandit.dashboard.live import StatsCache
from bandit.dashboard.routes import dashboard_routes
from bandit.dashboard.sampler import SeriesSampler

__all__ = ["SeriesSampler", "StatsCache", "dashboard_routes"]
