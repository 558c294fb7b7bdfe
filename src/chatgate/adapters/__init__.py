"""Backends: one module per wire protocol, and the embedded engine."""
