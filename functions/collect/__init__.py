"""The collect Lambda (`CollectFunction`)."""
