"""Hidden-state distillation: teacher states aligned to spaCy tokens, stored in target files,
and the mapping layer and loss that teach them to a student's tok2vec.

Importing `spacy_distill.hidden.model` registers `spacy-distill.HiddenProjector.v1` and
`spacy-distill.HiddenStateLoss.v1`; `spacy_distill.pipeline.distill_hidden` registers the
`distill_hidden` factory. Neither imports torch.
"""

from .alignment import HiddenStates, align_ragged, align_to_tokens, pool_pieces, token_spans
from .extract import HiddenStateTeacher, require_hidden_teacher
from .projection import HiddenProjection
from .storage import HiddenRequest, StoredHidden, decode_hidden, encode_hidden

__all__ = [
    "HiddenStates",
    "HiddenStateTeacher",
    "HiddenProjection",
    "HiddenRequest",
    "StoredHidden",
    "align_ragged",
    "align_to_tokens",
    "decode_hidden",
    "encode_hidden",
    "pool_pieces",
    "require_hidden_teacher",
    "token_spans",
]
