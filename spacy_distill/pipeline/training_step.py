"""What the plugin's trainable components share: one `update` step through their own
`get_loss`, and how an example is named in their errors."""

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from thinc.api import Optimizer, set_dropout_rate

from ..data.targets import USER_DATA_KEY


def update_step(
    component: Any,
    examples: Iterable[Example],
    begin_update: Callable[[List[Doc]], Tuple[Any, Callable[[Any], Any]]],
    *,
    drop: float = 0.0,
    sgd: Optional[Optimizer] = None,
    losses: Optional[Dict[str, float]] = None,
    check: Optional[Callable[[List[Example]], None]] = None,
    skip_empty_batches: bool = False,
) -> Dict[str, float]:
    """One training step of a component: forward, `component.get_loss`, backward, and the
    optimizer step.

    component (Any): the component (its `name`, `model`, `get_loss` and `finish_update`).
    examples (Iterable[Example]): the batch; targets are read from `eg.reference`.
    begin_update (Callable): the forward pass over the predicted docs: (guesses, backprop).
    drop (float): the dropout rate.
    sgd (Optional[Optimizer]): the optimizer; None accumulates gradients only.
    losses (Optional[Dict[str, float]]): loss totals, updated in place.
    check (Optional[Callable]): validates the batch before anything runs.
    skip_empty_batches (bool): a batch of empty docs only adds nothing (as spaCy's textcat).
    RETURNS (Dict[str, float]): the updated losses.
    """
    if losses is None:
        losses = {}
    losses.setdefault(component.name, 0.0)
    validate_examples(examples, f"{type(component).__name__}.update")
    examples = list(examples)
    if check is not None:
        check(examples)
    if skip_empty_batches and not any(len(eg.predicted) for eg in examples):
        return losses
    set_dropout_rate(component.model, drop)
    guesses, backprop = begin_update([eg.predicted for eg in examples])
    loss, d_guesses = component.get_loss(examples, guesses)
    backprop(d_guesses)
    if sgd is not None:
        component.finish_update(sgd)
    losses[component.name] += loss
    return losses


def describe_example(eg: Example, index: int) -> str:
    """Where an example is, for an error: its place in the batch, the start of its text and,
    when the target file recorded it, the source file and line."""
    data = eg.reference.user_data.get(USER_DATA_KEY) or {}
    provenance = data.get("provenance") or {}
    text = eg.reference.text
    snippet = text if len(text) <= 40 else text[:37] + "..."
    where = f"example {index} in batch ({snippet!r}"
    if provenance.get("source") is not None:
        where += f", from {provenance['source']}:{provenance.get('line')}"
    return where + ")"


__all__ = ["describe_example", "update_step"]
