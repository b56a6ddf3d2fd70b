"""Helpers shared by test files (import as `from helpers.<module> import ...`)."""
