"""Service settings, read from flags or BANDIT_* environment variables in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the service can be told at start-up."""

    redis_url: str = DEFAULT_REDIS_URL
    # False when the URL is our default: then `mab serve` may start a local Redis.
    redis_url_given: bool = False
    # True: redis_url names any node of a Redis Cluster, and the service follows the cluster.
    redis_cluster: bool = False
    # Feedback is answered 202 only once this many replicas hold it (Redis WAIT on the write's own
    # connection); 0: when the primary holds it, as Redis replication is asynchronous.
    ack_replicas: int = 0
    # How long a reward waits for those replicas before it is answered 503 (and resent by the client).
    ack_timeout_s: float = 1.0
    admin_token: str | None = None
    # HMAC key for decision ids; None: shared through Redis so replicas agree.
    secret: str | None = None
    # Key rotation: the secret BANDIT_SECRET replaced; ids signed with it verify until the given
    # time (absolute, so every replica and every restart agree on when the grace ends).
    previous_secret: str | None = None
    previous_secret_until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    # Set: POST /feedback needs this bearer token (or the admin token); None: the admin token, unless
    # feedback_open.
    feedback_token: str | None = None
    # With no feedback token: True lets anyone holding a decision id report its reward (and so steer
    # the policy with rewards for decisions they made themselves); False (the default): feedback then
    # needs the admin token, and is closed when there is none.
    feedback_open: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # The HTTP server in front of the app (bandit/cli/servers.py; measured in BENCHMARKS.md).
    server: Literal["uvicorn", "granian"] = "uvicorn"
    # How often each process re-reads experiment statistics from Redis.
    refresh_interval_s: float = 0.5
    # How often locally counted decisions are written to Redis.
    flush_interval_s: float = 0.2
    # Largest request body the proxy forwards (streamed, never held whole); 413 past it.
    max_body_bytes: int = 16 * 1024 * 1024
    # Request bodies up to this size are read whole before an upstream connection is taken, so a
    # slow upload holds none; larger ones stream, at most `arm_max_streamed_uploads` per arm at once.
    buffer_body_bytes: int = 1024 * 1024
    # All the bodies one process holds that way at once; past it, a body being read streams instead.
    max_buffered_bytes: int = 256 * 1024 * 1024
    # Seconds a request body may pause between two pieces, and may take in all; 408 past either.
    body_idle_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    # The request head (request line and headers): its size in bytes (431 past it), its number of
    # headers (431), and the seconds it may take to arrive (408), counted from the connection's start
    # or, on a kept-alive connection, from the next request's first byte.
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    # Requests one process has in flight to one arm of one experiment (503 past it, after trying
    # another arm), and how many of those may be streamed uploads (bodies over buffer_body_bytes).
    arm_max_inflight: int = 256
    arm_max_streamed_uploads: int = 16
    # Largest body of a management or feedback request (a full batch of 1000 rewards is ~300 kB); 413 past it.
    max_api_body_bytes: int = 1024 * 1024
    # Experiments one deployment holds; creating one more is refused (409) until one is deleted.
    max_experiments: int = 1000
    # Waiting for an upstream's response (each read); an arm's read_timeout_s overrides it.
    upstream_timeout_s: float = 30.0
    # Waiting for a connection to an upstream; an arm's connect_timeout_s overrides it.
    upstream_connect_timeout_s: float = 2.0
    # Copies for shadow arms waiting to be sent; beyond this they are dropped and counted.
    shadow_queue_size: int = 1024
    # Seconds between active health probes of the arms that have a health_path.
    probe_interval_s: float = 2.0
    # Seconds between two looks of the automatic actors (guardrails, canaries, auto-promote).
    autopilot_interval_s: float = 1.0
    # How long a process remembers the arm it gave a sticky unit (X-Bandit-Unit).
    sticky_ttl_s: float = 3600.0
    # The HTTP client the proxy forwards with (see proxy/clients/__init__.py and BENCHMARKS.md).
    upstream_client: Literal["pyreqwest", "aiohttp", "httpx", "aiosonic", "httpx-aiohttp"] = "pyreqwest"
    # The dashboard's history: per-experiment buckets of this width, the newest this many kept.
    series_bucket_s: int = 5
    series_buckets: int = 720
    # Seconds between the stats snapshots an events stream (SSE) sends.
    events_interval_s: float = 1.0
    # An events stream ends after this long and the browser reconnects (resuming where it left
    # off): an open dashboard never holds up a graceful shutdown, which waits for every response.
    events_stream_max_s: float = 15.0
    # True: /dashboard and the events stream are readable without a token (controls still
    # need the admin token); False: the events stream needs the admin token and no page is served.
    dashboard_public: bool = True
    # Events streams (SSE) open at once on one replica, over all its workers; 503 past it.
    max_event_streams: int = 64
    # GET /metrics and the counting behind it (bandit/telemetry/metrics.py); False: neither.
    metrics: bool = True
    # A scrape's text is reused for this long by the worker that rendered it: rendering costs
    # 10 to 20 µs per series (~1 s at 1,000 experiments of 3 arms), so a client scraping in a loop
    # costs at most one render per this many seconds. 0: every scrape renders.
    metrics_max_age_s: float = 5.0
    # Bearer token that may read /metrics (the admin token may too); unset: as the dashboard.
    metrics_token: str | None = None
    log_level: str = "info"
    # "text" (one line per record, for people) or "json" (one JSON object per line, for collectors).
    log_format: str = "text"


# Environment variable for each setting; flags take precedence over these.
_ENVIRONMENT = {
    "redis_url": "BANDIT_REDIS_URL",
    "redis_cluster": "BANDIT_REDIS_CLUSTER",
    "ack_replicas": "BANDIT_ACK_REPLICAS",
    "ack_timeout_s": "BANDIT_ACK_TIMEOUT",
    "admin_token": "BANDIT_ADMIN_TOKEN",
    "secret": "BANDIT_SECRET",
    "previous_secret": "BANDIT_PREVIOUS_SECRET",
    "previous_secret_until": "BANDIT_PREVIOUS_SECRET_UNTIL",
    "feedback_token": "BANDIT_FEEDBACK_TOKEN",
    "feedback_open": "BANDIT_FEEDBACK_OPEN",
    "host": "BANDIT_HOST",
    "port": "BANDIT_PORT",
    "workers": "BANDIT_WORKERS",
    "server": "BANDIT_SERVER",
    "refresh_interval_s": "BANDIT_REFRESH_INTERVAL",
    "flush_interval_s": "BANDIT_FLUSH_INTERVAL",
    "max_body_bytes": "BANDIT_MAX_BODY_BYTES",
    "buffer_body_bytes": "BANDIT_BUFFER_BODY_BYTES",
    "max_buffered_bytes": "BANDIT_MAX_BUFFERED_BYTES",
    "body_idle_timeout_s": "BANDIT_BODY_IDLE_TIMEOUT",
    "body_timeout_s": "BANDIT_BODY_TIMEOUT",
    "max_header_bytes": "BANDIT_MAX_HEADER_BYTES",
    "max_headers": "BANDIT_MAX_HEADERS",
    "header_timeout_s": "BANDIT_HEADER_TIMEOUT",
    "arm_max_inflight": "BANDIT_ARM_MAX_INFLIGHT",
    "arm_max_streamed_uploads": "BANDIT_ARM_MAX_STREAMED_UPLOADS",
    "max_api_body_bytes": "BANDIT_MAX_API_BODY_BYTES",
    "max_experiments": "BANDIT_MAX_EXPERIMENTS",
    "upstream_timeout_s": "BANDIT_UPSTREAM_TIMEOUT",
    "upstream_connect_timeout_s": "BANDIT_UPSTREAM_CONNECT_TIMEOUT",
    "shadow_queue_size": "BANDIT_SHADOW_QUEUE_SIZE",
    "probe_interval_s": "BANDIT_PROBE_INTERVAL",
    "autopilot_interval_s": "BANDIT_AUTOPILOT_INTERVAL",
    "sticky_ttl_s": "BANDIT_STICKY_TTL",
    "upstream_client": "BANDIT_UPSTREAM_CLIENT",
    "series_bucket_s": "BANDIT_SERIES_BUCKET",
    "series_buckets": "BANDIT_SERIES_BUCKETS",
    "events_interval_s": "BANDIT_EVENTS_INTERVAL",
    "events_stream_max_s": "BANDIT_EVENTS_STREAM_MAX",
    "dashboard_public": "BANDIT_DASHBOARD_PUBLIC",
    "max_event_streams": "BANDIT_MAX_EVENT_STREAMS",
    "metrics": "BANDIT_METRICS",
    "metrics_max_age_s": "BANDIT_METRICS_MAX_AGE",
    "metrics_token": "BANDIT_METRICS_TOKEN",
    "log_level": "BANDIT_LOG_LEVEL",
    "log_format": "BANDIT_LOG_FORMAT",
}


#: The log levels both servers and Python's logging know, in any case.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: What the service's log lines may look like (bandit/cli/log_format.py).
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting has a value of the wrong type or range."""


def load_settings(overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, with `overrides` (e.g. parsed flags; None values ignored) on top."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field, variable in _ENVIRONMENT.items():
        if environ.get(variable):
            raw[field] = environ[variable]
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw["redis_url_given"] = "redis_url" in raw
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(f"invalid setting: {error}") from None
    if settings.workers < 1:
        raise SettingsError("Setting 'workers' (BANDIT_WORKERS) must be >= 1")
    if settings.log_level.lower() not in LOG_LEVELS:
        raise SettingsError(f"Setting 'log_level' (BANDIT_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        format_given = settings.log_format
        raise SettingsError(f"Setting 'log_format' (BANDIT_LOG_FORMAT) must be text or json, not {format_given!r}")
    if settings.metrics_max_age_s < 0:
        raise SettingsError("Setting 'metrics_max_age_s' (BANDIT_METRICS_MAX_AGE) must be >= 0 seconds")
    if not 0.05 <= settings.autopilot_interval_s <= 60:
        raise SettingsError("Setting 'autopilot_interval_s' (BANDIT_AUTOPILOT_INTERVAL) must be 0.05 to 60 seconds")
    if settings.max_experiments < 1 or settings.max_api_body_bytes < 1:
        raise SettingsError("BANDIT_MAX_EXPERIMENTS and BANDIT_MAX_API_BODY_BYTES must be >= 1")
    _check_limits(settings)
    _check_rotation(settings)
    _check_redis(settings)
    if settings.series_bucket_s < 1 or settings.series_buckets < 2:
        raise SettingsError("BANDIT_SERIES_BUCKET must be >= 1 s and BANDIT_SERIES_BUCKETS >= 2")
    return settings


def _check_limits(settings: Settings) -> None:
    """Every limit on what one client may cost must be positive: none can be switched off by 0."""
    positive = {
        "BANDIT_BUFFER_BODY_BYTES": settings.buffer_body_bytes,
        "BANDIT_MAX_BUFFERED_BYTES": settings.max_buffered_bytes,
        "BANDIT_BODY_IDLE_TIMEOUT": settings.body_idle_timeout_s,
        "BANDIT_BODY_TIMEOUT": settings.body_timeout_s,
        "BANDIT_MAX_HEADER_BYTES": settings.max_header_bytes,
        "BANDIT_MAX_HEADERS": settings.max_headers,
        "BANDIT_HEADER_TIMEOUT": settings.header_timeout_s,
        "BANDIT_ARM_MAX_INFLIGHT": settings.arm_max_inflight,
        "BANDIT_ARM_MAX_STREAMED_UPLOADS": settings.arm_max_streamed_uploads,
        "BANDIT_MAX_EVENT_STREAMS": settings.max_event_streams,
    }
    for variable, value in positive.items():
        if value <= 0:
            raise SettingsError(f"{variable} must be > 0 (it is {value})")


def redis_userinfo(url: str) -> tuple[str, str, str] | None:
    """(scheme, userinfo, the rest after its `@`) of a Redis URL with credentials, else None.

    A password holding an unencoded `#`, `/` or `?` ends the authority early for `urlsplit` (and
    so for redis-py): such a URL (`userinfo_cut_short`) is read up to its *last* `@`, which may
    take more than the userinfo when the query holds a `@` too: more is masked, never less."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return None
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        return scheme, userinfo, rest[len(userinfo) + 1 :]
    if not userinfo_cut_short(url):
        return None  # a `@` in the path or query, and no credentials
    userinfo, _at, after = rest.rpartition("@")
    return scheme, userinfo, after


def userinfo_cut_short(url: str) -> bool:
    """Whether a `@` after what `urlsplit` takes for the authority is really the end of a user
    name or password that holds `#`, `/` or `?`: the authority it found then has no host, or a
    port that is no number, or no `/` comes before that `@` (a path would)."""
    rest = url.partition("://")[2]
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in rest
    if "@" not in rest or "@" in parts.netloc or not parts.netloc:
        return False  # no `@` past the authority, or credentials found, or a socket path (unix:///...)
    try:
        port_ok = parts.port is None or parts.port >= 0
    except ValueError:
        port_ok = False
    return not parts.hostname or not port_ok or "/" not in rest[: rest.index("@")]


def _check_redis(settings: Settings) -> None:
    if userinfo_cut_short(settings.redis_url):
        # redis-py would cut the URL at that character: another host, no password or part of one.
        # The message names the characters, never the URL (it holds the password).
        raise SettingsError(
            "BANDIT_REDIS_URL: its user name or password holds #, / or ? unencoded; percent-encode them"
            " (# as %23, / as %2F, ? as %3F)"
        )
    if settings.ack_replicas < 0 or settings.ack_timeout_s <= 0:
        raise SettingsError("BANDIT_ACK_REPLICAS must be >= 0 and BANDIT_ACK_TIMEOUT > 0 seconds")
    if not settings.redis_cluster:
        return
    if not settings.redis_url_given:
        raise SettingsError("BANDIT_REDIS_CLUSTER needs BANDIT_REDIS_URL naming a node of the cluster")
    database = urlsplit(settings.redis_url).path.strip("/")
    if database not in ("", "0"):
        raise SettingsError(
            f"BANDIT_REDIS_URL selects database {database}, but a Redis Cluster has only database 0: "
            "drop the /{database} from the URL"
        )


def _check_rotation(settings: Settings) -> None:
    if (settings.previous_secret is None) != (settings.previous_secret_until is None):
        raise SettingsError("BANDIT_PREVIOUS_SECRET and BANDIT_PREVIOUS_SECRET_UNTIL are set together or not at all")
    if settings.previous_secret is not None and not settings.secret:
        raise SettingsError(
            "BANDIT_PREVIOUS_SECRET needs BANDIT_SECRET (the new key); "
            "the secret shared through Redis is rotated with `mab rotate-secret`"
        )
    if settings.previous_secret is not None and settings.previous_secret == settings.secret:
        raise SettingsError("BANDIT_PREVIOUS_SECRET is the same as BANDIT_SECRET: nothing would rotate")


def settings_to_environ(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a worker process."""
    environ = {}
    for field, variable in _ENVIRONMENT.items():
        value = getattr(settings, field)
        if value is not None:
            environ[variable] = str(value)
    return environ
