"""The floor every other layer stands on: clock, settings, events, errors, taxonomy, tracing.

Imports nothing else of the package.
"""
