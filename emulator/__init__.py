"""Faithful fakes of what krun talks to, sharing one in-memory world.

Nothing here imports `krun`: the fakes are written from the real services'
behaviour, so a bug shared by launcher and fake cannot cancel itself out.
"""
