from pathlib import Path
from typing import Dict, List, Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ._app import app


def parse_actions(values: List[str]) -> Dict[str, str]:
    """`LABEL=ACTION` strings (each may hold several, comma-separated: "spam=block,fraud=block";
    an empty one holds none) to a dict, with an error naming the bad one."""
    actions: Dict[str, str] = {}
    for value in (part for given in values for part in given.split(",") if part.strip()):
        label, sep, action = value.partition("=")
        if not sep or not label.strip() or not action.strip():
            raise DistillError(f"--action {value!r}: expected LABEL=ACTION, e.g. spam=block")
        actions[label.strip()] = action.strip()
    return actions


@app.command("export")
def export_cli(
    trained: str = typer.Argument(
        ..., help="The trained student pipeline (e.g. training/student/model-best)"
    ),
    output: Path = typer.Argument(..., help="Folder for the exported pipeline"),
    component: Optional[str] = typer.Option(
        None, "--component", help="The text classifier (default: the only one)"
    ),
    add_filter: bool = typer.Option(
        False,
        "--filter/--no-filter",
        help="Add a semantic_filter with the tuned thresholds and band",
    ),
    action: List[str] = typer.Option(
        [],
        "--action",
        help="LABEL=ACTION for the filter (allow, block, review or your own; default: the ones "
        "`tune --action` judged the thresholds with); repeatable or comma-separated",
    ),
    default_action: Optional[str] = typer.Option(
        None,
        "--default-action",
        help="The filter's verdict when no label is decided (default: the one `tune "
        "--default-action` stored, else allow)",
    ),
    report: Optional[Path] = typer.Option(
        None, "--report", help="report.json of `spacy-distill evaluate`, for the distillation card"
    ),
    train_data: Optional[Path] = typer.Option(
        None, "--train-data", help="The training target file (default: paths.train of the config)"
    ),
    dev_data: Optional[Path] = typer.Option(
        None, "--dev-data", help="The dev target file (default: paths.dev of the config)"
    ),
    check_data: Optional[Path] = typer.Option(
        None,
        "--check-data",
        help="Texts (JSONL/CSV or target file) on which exported and trained predictions must agree",
    ),
    check_limit: int = typer.Option(
        2000, "--check-limit", min=0, help="At most this many texts of --check-data (0: all)"
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="Package name in meta.json (for spacy package)"
    ),
    version: Optional[str] = typer.Option(None, "--version", help="Package version in meta.json"),
    license: Optional[str] = typer.Option(
        None,
        "--license",
        help="Package licence in meta.json (the student inherits the terms of its data and teacher)",
    ),
    half_precision: bool = typer.Option(
        True,
        "--half-precision/--full-precision",
        help="Store a static student's embedding tables as float16: half the size and load "
        "memory, probabilities within 0.01 (checked)",
    ),
):
    """Turn a trained student into a plain spaCy pipeline: drop training-only components, make
    distill_textcat* spaCy's textcat* (same weights, checked), optionally add the filter, and
    write a distillation card into meta.json. Then run `spacy-distill package` on OUTPUT."""
    from ..packaging.export import export_pipeline

    try:
        actions = parse_actions(action)
        if actions and not add_filter:
            raise DistillError("--action needs --filter")
        texts = None
        if check_data is not None:
            texts = _check_texts(trained, component, check_data, check_limit)
        result = export_pipeline(
            trained,
            output,
            component=component,
            add_filter=add_filter,
            actions=actions,
            default_action=default_action,
            report=report,
            train_data=train_data,
            dev_data=dev_data,
            check_texts=texts,
            name=name,
            version=version,
            license=license,
            half_precision=half_precision,
        )
    except DistillError as err:
        msg.fail(str(err), exits=1)
    if result["removed"]:
        msg.info(f"Removed training-only components: {result['removed']}")
    if result["inlined"]:
        msg.info(
            f"Copied {result['inlined']} into the classifier that listened to it, and removed it"
        )
    for pipe_name, factory in result["converted"].items():
        msg.info(f"'{pipe_name}' is now spaCy's {factory}")
    if result["half_precision_bytes_saved"]:
        msg.info(
            f"Embedding tables stored as float16: {result['half_precision_bytes_saved'] / 1e6:.1f} MB smaller"
        )
    msg.info(
        f"Predictions of {result['n_checked']} texts equal the trained pipeline's "
        f"(largest difference {result['max_difference']:.2g})"
    )
    for warning in result["warnings"]:
        msg.warn(warning)
    msg.good(f"Exported {result['pipeline']} to {output}")


def _check_texts(trained: str, component: Optional[str], path: Path, limit: int) -> List[str]:
    import spacy

    from ..evaluation.data import load_evaluation_data
    from ..pipeline.textcat_lookup import find_textcat, is_exclusive

    nlp = spacy.load(trained)
    name = find_textcat(nlp, component)
    return load_evaluation_data(
        path, list(nlp.get_pipe(name).labels), exclusive=is_exclusive(nlp, name), limit=limit
    ).texts
