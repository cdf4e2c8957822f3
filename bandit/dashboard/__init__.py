"""The dashboard pages and their script and style, served by bandit/api/dashboard.py."""
