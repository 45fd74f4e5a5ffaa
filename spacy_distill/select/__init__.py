"""Budget-aware selection: which pool texts the teacher labels next.

`select_pool` reads an unlabelled pool as a stream, drops what the teacher must never pay for
again (texts already labelled or held out for evaluation, exact and near-duplicates; see
`dedupe`), and lets a strategy from the `spacy_distill_selectors` registry (see `strategies`)
pick exactly `budget` texts, written in priority order with the reason each was picked.
"""

from .run import SelectionSummary, duplicates_path, select_pool  # noqa: F401

__all__ = ["SelectionSummary", "duplicates_path", "select_pool"]
