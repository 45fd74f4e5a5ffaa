"""Hugging Face models: loading them (`loading`) and reading their hidden states (`features`,
`extractor`). The layer below the teachers and augmenters that run transformers models: nothing
here imports `spacy_distill.teachers`, and torch and transformers are imported inside functions
only.
"""
