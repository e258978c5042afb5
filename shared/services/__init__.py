"""Use cases over the storage port: what the handlers, the local runtime, the CLI and the TUI call."""
