"""Clients: one harness, and the netcat, probe and storm commands built on it."""
