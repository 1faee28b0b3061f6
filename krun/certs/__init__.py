"""Workload keys, CSRs and certificate files.

`keys` (pure: key and CSR bytes), `files` (the one path scheme under the base directory and
atomic writes with the right modes and owners), `rotation` (pure: when to renew).
"""
