"""Fault-injection scenarios against real processes on loopback: Redis killed and restarted, a
service worker killed, rewards raced across processes, upstreams dead, failing and slow.

`python -m loadtest.faults` runs them all with a longer load and prints the figures;
`tests/reliability` runs the same scenarios shorter and asserts them.
"""
