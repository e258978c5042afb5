"""Footfall's domain logic, storage adapter and local runtime (shared by the Lambdas, the CLI and the TUI)."""
