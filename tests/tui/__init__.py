"""TUI tests: Pilot against a seeded moto table, snapshots against fixed data, the CLI entry."""
