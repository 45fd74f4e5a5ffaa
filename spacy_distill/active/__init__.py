"""Rounds of budget-aware distillation: label a random seed set, train, select what the student
most needs, annotate it (cache hits cost nothing), retrain, until the budget is spent."""
