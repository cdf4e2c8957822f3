"""The dashboard pages, their script and style: package data served by bandit/dashboard/routes.py."""

__all__: list[str] = []
