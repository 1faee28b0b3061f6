"""krun: the launcher that brings a Cloud Run service (or any container) into the mesh."""

__version__ = "0.1.0.dev0"
