"""Look srsly's msgpack encoders and decoders up once per run, not once per doc.

`DocBin.add` (with `store_user_data=True`) packs every doc's user data with
`srsly.msgpack_dumps`, and `DocBin.get_docs` unpacks it with `srsly.msgpack_loads`. srsly
(2.5.6, the latest) builds a new packer or unpacker for each call, and each asks catalogue for
its registered codecs: a scan of the installed distributions' entry points and of catalogue's
whole registry (thousands of spaCy functions). Measured on target docs, that is about 2 ms
per doc, most of `annotate`'s time with a fast teacher (about 500 docs/s at best) and as much
again for every pass of a reader over the targets. The codecs do not change while a file is
written or read, so `cached_msgpack_codecs` looks them up once for the span of a `with` block.

srsly has no public hook for this (`msgpack_dumps` takes no packer options), so the block
shadows `get_all` on srsly's two registry objects, and only while it lasts. It is kept because it
pays: on 2,000 target docs, `DocBin.add` + `to_bytes` took 1.64 ms/doc without it and 0.09 with
it, `from_bytes` + `get_docs` 1.71 and 0.13 ms/doc, and a student's `nlp.to_bytes()` 39 and
11 ms. Turning off catalogue's entry-point scan (its public `entry_points` attribute) would
remove only about three quarters of the lookup. Where the registries are not the catalogue
registries this expects, the block runs uncached rather than patch something unknown.
"""

from contextlib import contextmanager
from typing import Iterator

import catalogue
import srsly


@contextmanager
def cached_msgpack_codecs() -> Iterator[None]:
    """Within the block, srsly's msgpack codec registries answer from one lookup.

    Codecs registered before the block are all found; a nested block is a no-op.
    """
    registries = (srsly.msgpack_encoders, srsly.msgpack_decoders)
    if not all(isinstance(registry, catalogue.Registry) for registry in registries):
        yield  # another srsly: leave its registries alone
        return
    if all("get_all" in vars(registry) for registry in registries):
        yield  # already cached by an enclosing block
        return
    for registry in registries:
        found = registry.get_all()
        # An instance attribute shadows the class's method for this registry only.
        registry.get_all = lambda found=found: dict(found)
    try:
        yield
    finally:
        for registry in registries:
            vars(registry).pop("get_all", None)
