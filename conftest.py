"""Registers the antenna-invariants pytest plugin for every session started in this repository."""

pytest_plugins = ["antenna_invariants.plugin"]
