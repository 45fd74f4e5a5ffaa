"""Annotation: `annotate` and `convert` (`annotate.py`), the input records (`inputs`), where targets
go (`sinks`, `chunked`), the run that joins them with the teacher (`run`) and the teacher cache
(`cache`). Import from the modules: this package imports nothing, so that the layers below
(vectors, hidden states) can use the cache without loading the run."""
