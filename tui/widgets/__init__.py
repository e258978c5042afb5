"""Reusable, data-agnostic widgets: they take values and never touch the data source."""
