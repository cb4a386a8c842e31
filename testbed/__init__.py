"""testbed: run, load and compare network server designs."""

__version__ = "0.1.0"
