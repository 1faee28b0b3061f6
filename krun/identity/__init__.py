"""Workload identity: Google tokens (`google`) behind a per-audience cache (`cache`)."""
