"""Lambda entry points: thin adapters around `shared`."""
