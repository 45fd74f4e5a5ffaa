"""Errors raised on bad input. Each names the file, line, doc or field at fault."""


class DistillError(ValueError):
    """Base class for the plugin's input errors."""


class TargetFormatError(DistillError):
    """A teacher-target file or doc does not follow the target format."""


class RecordError(DistillError):
    """An input record (a JSONL or CSV line) is malformed."""


class LabelMismatchError(DistillError):
    """The teacher's, the gold and the student's label sets do not agree."""


class UnsupportedModelError(DistillError):
    """A textcat model whose output layer the plugin cannot read logits from."""
