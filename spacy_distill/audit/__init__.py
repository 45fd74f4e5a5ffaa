"""Auditing a student: why it decided (explanations) and what it inherited from its teacher."""
