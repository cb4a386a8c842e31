"""Servers: sans-I/O services run by interchangeable concurrency models."""
