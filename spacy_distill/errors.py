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


class TeacherError(DistillError):
    """A teacher failed on a text (a bad answer, a server that gave up).

    `index` is the position, in the `texts` passed to `score`, of the text the failure is about
    (None when it is about the whole call): callers that know where the texts came from (annotate)
    name the input record instead of a position in a length-sorted batch.
    """

    def __init__(self, message: str, index=None):
        super().__init__(message)
        self.index = index
