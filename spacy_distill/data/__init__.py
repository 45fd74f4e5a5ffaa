"""Records, targets and the checks on them: the data layer."""
