"""Registers a slow, call-counting teacher for subprocess tests (`annotate --code`)."""

import hashlib
import os
import time

import numpy

from spacy_distill.registry import registry


class CountingTeacher:
    """Logs every text it scores to a file, sleeping a little per batch (to be killed mid-run)."""

    def __init__(self, log_path: str, delay: float):
        self.labels = ("ham", "spam")
        self.exclusive = True
        self.teacher_id = "counting"
        self.batch_size = 4
        self.log_path = log_path
        self.delay = delay

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"counting-v1").hexdigest()

    def score(self, texts):
        time.sleep(self.delay)
        with open(self.log_path, "a", encoding="utf8") as log:
            log.write("".join(text + "\n" for text in texts))
            log.flush()
            os.fsync(log.fileno())
        spam = numpy.asarray([float(len(text) % 3) for text in texts])
        logits = numpy.stack([numpy.zeros_like(spam), spam], axis=1)
        return logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))


@registry.teachers("spacy-distill-test.CountingTeacher.v1")
def make_counting_teacher(log_path: str, delay: float = 0.0) -> CountingTeacher:
    return CountingTeacher(log_path, delay)
