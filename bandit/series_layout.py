"""Where the dashboard's history lives in time: bucket width and how many buckets are kept."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """Bucket width and how many buckets are kept."""

    bucket_s: int = 5
    buckets: int = 720

    def bucket_of(self, unix_s: float) -> int:
        return int(unix_s // self.bucket_s)

    def expire_at(self, bucket: int) -> int:
        """Unix time a bucket's key expires: `buckets` widths after the bucket closes."""
        return (bucket + 1 + self.buckets) * self.bucket_s
