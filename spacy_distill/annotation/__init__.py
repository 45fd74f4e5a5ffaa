"""How `annotate` runs: the input records (`inputs`), where targets go (`sinks`), and the run
that joins them with the teacher and its cache (`run`). `spacy_distill.annotate` is the API."""
from .inputs import RecordStream, check_record_labels, gold_cats, record_provenance
from .run import AnnotationRun, AnnotationSummary
from .sinks import SingleFileSink, TargetSink, check_output_path, open_sink, partial_path

__all__ = [
    "AnnotationRun", "AnnotationSummary", "RecordStream", "SingleFileSink", "TargetSink",
    "check_output_path", "check_record_labels", "gold_cats", "open_sink", "partial_path",
    "record_provenance",
]
