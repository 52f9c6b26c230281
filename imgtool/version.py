"""The version, alone, so that any module can name it without importing the package's API.

Layer: foundations (imports nothing)."""

__version__ = "0.1.0"
