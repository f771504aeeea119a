"""Probes: one module per protocol, one contract (see base.py)."""
