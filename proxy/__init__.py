"""The hot path: route, decide, forward, record; no Redis round trip per request."""
