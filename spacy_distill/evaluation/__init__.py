"""Measure a student against its teacher: what each costs to run, and plots for a report."""
