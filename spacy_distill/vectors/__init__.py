"""Teacher-derived word vectors for static-embedding students: the vocabulary of the training
data, each word encoded by the teacher on its own, reduced by PCA and frequency-weighted."""
from .build import build_word_vectors
from .encode import TeacherWordEncoder, encode_words
from .table import WordVectors
from .vocabulary import Vocabulary, count_words

__all__ = ["build_word_vectors", "TeacherWordEncoder", "encode_words", "WordVectors", "Vocabulary", "count_words"]
