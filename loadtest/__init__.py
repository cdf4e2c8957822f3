"""Simulated model servers, a feedback-sending traffic generator, and benchmarks."""
