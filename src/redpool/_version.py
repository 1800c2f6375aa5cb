"""The package version (read by the build backend, too)."""

__version__ = "0.2.0.dev0"
