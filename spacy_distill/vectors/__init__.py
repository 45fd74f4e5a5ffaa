"""Teacher-derived word vectors for static-embedding students: the vocabulary of the training
data, each word encoded by the teacher on its own (or averaged from its stored in-context token
states), reduced by PCA and frequency-weighted."""

from .build import build_word_vectors, build_word_vectors_from_token_states
from .encode import TeacherWordEncoder, encode_words
from .table import WordVectors
from .vocabulary import Vocabulary, count_words

__all__ = [
    "build_word_vectors",
    "build_word_vectors_from_token_states",
    "TeacherWordEncoder",
    "encode_words",
    "WordVectors",
    "Vocabulary",
    "count_words",
]
