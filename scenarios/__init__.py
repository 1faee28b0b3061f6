"""The scenario harness: whole deployments on one machine, run end to end."""
