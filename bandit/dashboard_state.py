"""What the dashboard needs beside the core services: cached stats, the history, its sampler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bandit.live_stats import LiveStats
from bandit.series import SeriesStore
from bandit.series_layout import SeriesLayout
from bandit.series_sampler import SeriesSampler
from bandit.services import Services

#: How often each replica offers to sample the current bucket of every experiment.
SAMPLE_INTERVAL_S = 1.0


@dataclass(slots=True)
class Dashboard:
    live: LiveStats
    series: SeriesStore
    public: bool
    events_interval_s: float
    events_stream_max_s: float


@contextlib.asynccontextmanager
async def open_dashboard(services: Services) -> AsyncIterator[Dashboard]:
    """The dashboard's state, with its sampler running until exit."""
    settings = services.settings
    layout = services.store.series or SeriesLayout(settings.series_bucket_s, settings.series_buckets)
    # Stats are recomputed at most once per events interval, shared by every watcher.
    live = LiveStats(services.store, services.health, max_age_s=settings.events_interval_s * 0.9)
    series = SeriesStore(services.redis, layout)
    sampler = SeriesSampler(series, live, services.registry, interval_s=SAMPLE_INTERVAL_S)
    task = asyncio.create_task(sampler.run())
    try:
        yield Dashboard(
            live, series, settings.dashboard_public, settings.events_interval_s, settings.events_stream_max_s
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
