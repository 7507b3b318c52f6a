"""Thin Click commands: parse and validate, call the core, print."""
