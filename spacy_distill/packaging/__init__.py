"""Shipping a student: export (a training pipeline made lean and checked equivalent) and package
(a pip-installable wheel that needs spaCy alone)."""
