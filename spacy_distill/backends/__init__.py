"""Backends that run a teacher over the texts an `annotate` run still needs (see `base`)."""
