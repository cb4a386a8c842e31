"""Concurrency models: one module each, all behind the contract in ``base``."""
