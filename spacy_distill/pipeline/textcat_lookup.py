"""Find the text classifier of a pipeline (a teacher's, or a student's to evaluate)."""

from typing import Optional

from spacy.language import Language

from ..errors import DistillError

# factory name -> exclusive classes
TEXTCAT_FACTORIES = {
    "textcat": True,
    "distill_textcat": True,
    "textcat_multilabel": False,
    "distill_textcat_multilabel": False,
}


def find_textcat(nlp: Language, component: Optional[str] = None) -> str:
    """The name of the pipeline's text classifier.

    nlp (Language): the pipeline.
    component (Optional[str]): the name to use; None picks the only text classifier.
    RETURNS (str): the component name.
    """
    candidates = [
        name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory in TEXTCAT_FACTORIES
    ]
    if component is not None:
        if component not in nlp.pipe_names:
            raise DistillError(
                f"The pipeline has no component '{component}'; it has {nlp.pipe_names}"
            )
        if component not in candidates:
            raise DistillError(
                f"Component '{component}' is not a text classifier (factories: {sorted(TEXTCAT_FACTORIES)})"
            )
        return component
    if not candidates:
        raise DistillError(
            f"The pipeline has no text classifier (a {' or '.join(sorted(TEXTCAT_FACTORIES))} component; "
            f"its components: {nlp.pipe_names}): train one, or point at the pipeline that has it"
        )
    if len(candidates) != 1:
        raise DistillError(
            f"The pipeline has {len(candidates)} text classifiers ({candidates}); name one with `component`"
        )
    return candidates[0]


def is_exclusive(nlp: Language, component: str) -> bool:
    """Whether the named text classifier has exclusive classes."""
    return TEXTCAT_FACTORIES[nlp.get_pipe_meta(component).factory]
