"""Moved to `spacy_distill.data.leakage` (the data layer); kept for existing imports."""
from ..data.leakage import *  # noqa: F401,F403
