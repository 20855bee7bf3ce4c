"""MMATS domain kernel: pure Python, no Ray, no network, no database driver."""

__version__ = "0.1.0"
