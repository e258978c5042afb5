"""One screen per operator task."""
