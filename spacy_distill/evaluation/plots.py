"""PNG figures for an evaluation report: reliability, confusion, speed vs quality, thresholds.

matplotlib is an optional extra (`pip install spacy-distill[evaluate]`) and is imported inside
each function, so `import spacy_distill` and a packaged student never load it. Figures are
drawn on a bare `Figure` with the Agg canvas rather than through `pyplot`: that writes files on
a machine with no display, and leaves the backend of a user's notebook or GUI alone.
"""

import math
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

DPI = 120
PathLike = Union[str, Path]


def plot_reliability(
    curves: Mapping[str, Any],
    path: PathLike,
    title: str = "Reliability diagram",
) -> Path:
    """Accuracy against confidence per bin, one line per model, with the bins' counts below.

    curves (Mapping[str, Any]): model name (e.g. "student", "teacher") -> its bins: a list of
        {lo, hi, count, confidence, accuracy} (an empty bin has count 0 and None for the means),
        or a dict with those bins under "bins" (and optionally "ece", shown in the legend).
    path (Union[str, Path]): the PNG to write; parent directories are created.
    title (str): the figure title.
    RETURNS (Path): the path written.
    """
    figure = _new_figure(6.0, 6.4)
    grid = figure.add_gridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    top = figure.add_subplot(grid[0])
    bottom = figure.add_subplot(grid[1], sharex=top)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    n_models = max(len(curves), 1)
    for index, (name, curve) in enumerate(curves.items()):
        bins, ece = _bins_and_ece(curve, name)
        filled = [
            b
            for b in bins
            if b.get("count") and b.get("confidence") is not None and b.get("accuracy") is not None
        ]
        label = name if ece is None else f"{name} (ECE {ece:.3f})"
        colour = f"C{index}"
        # Empty bins are left out rather than drawn at 0, which would read as "always wrong".
        top.plot(
            [b["confidence"] for b in filled],
            [b["accuracy"] for b in filled],
            marker="o",
            color=colour,
            label=label,
        )
        # Side-by-side bars inside each bin, so several models' counts stay readable.
        for b in bins:
            lo, hi = float(b["lo"]), float(b["hi"])
            width = (hi - lo) / n_models
            bottom.bar(
                lo + index * width,
                b.get("count") or 0,
                width=width,
                align="edge",
                color=colour,
                alpha=0.6,
            )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    top.tick_params(labelbottom=False)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.grid(alpha=0.3)
    return _save(figure, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    path: PathLike,
    title: str = "Confusion matrix",
) -> Path:
    """A heat map of counts, rows = gold label, columns = predicted label.

    matrix (Sequence[Sequence[int]]): counts, len(labels) x len(labels).
    labels (Sequence[str]): the labels, in the matrix's order.
    path (Union[str, Path]): the PNG to write; parent directories are created.
    title (str): the figure title.
    RETURNS (Path): the path written.
    """
    counts = numpy.asarray(matrix, dtype="float64")
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(
            f"plot_confusion: the matrix is {counts.shape[0] if counts.ndim else 0} x "
            f"{counts.shape[1] if counts.ndim > 1 else 0} but there are {n} labels {list(labels)}; "
            "it needs one row and one column per label"
        )
    size = max(4.0, 1.0 + 0.6 * n)
    figure = _new_figure(size + 1.0, size)
    axes = figure.add_subplot(1, 1, 1)
    top = counts.max() if counts.size and counts.max() > 0 else 1.0
    image = axes.imshow(counts, cmap="Blues", vmin=0, vmax=top)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n))
    axes.set_yticks(range(n))
    axes.set_xticklabels(labels, rotation=45, ha="right")
    axes.set_yticklabels(labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title)
    # Counts would be unreadable past ~30 labels; the colours still carry the pattern.
    if n <= 30:
        for row in range(n):
            for col in range(n):
                value = counts[row, col]
                axes.text(
                    col,
                    row,
                    f"{int(value)}" if float(value).is_integer() else f"{value:.2g}",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if value > top / 2 else "black",
                )
    return _save(figure, path)


def plot_speed_quality(
    points: Sequence[Mapping[str, Any]],
    path: PathLike,
    title: str = "Speed and quality",
    quality_name: str = "accuracy",
) -> Path:
    """Quality against throughput (log scale) per model: the distillation trade-off at a glance.

    points (Sequence[Mapping[str, Any]]): one per model: {name, docs_per_s, quality} and
        optionally size_mb, which scales the marker's area.
    path (Union[str, Path]): the PNG to write; parent directories are created.
    title (str): the figure title.
    quality_name (str): the y-axis label, e.g. "macro F1".
    RETURNS (Path): the path written.
    """
    for i, point in enumerate(points):
        for key in ("name", "docs_per_s", "quality"):
            if point.get(key) is None:
                raise ValueError(f"plot_speed_quality: points[{i}] has no '{key}': {dict(point)}")
        if not point["docs_per_s"] > 0:
            raise ValueError(
                f"plot_speed_quality: points[{i}] ('{point['name']}') has docs_per_s="
                f"{point['docs_per_s']}; a log axis needs a positive rate"
            )
    figure = _new_figure(6.4, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    sizes = [p.get("size_mb") for p in points]
    largest = max((s for s in sizes if s), default=None)
    for index, point in enumerate(points):
        size_mb = point.get("size_mb")
        # Area in proportion to size on disk, with a floor so a tiny student stays visible.
        area = 40.0 if not (size_mb and largest) else 40.0 + 600.0 * size_mb / largest
        axes.scatter(
            point["docs_per_s"],
            point["quality"],
            s=area,
            color=f"C{index}",
            alpha=0.8,
            edgecolors="black",
            linewidths=0.5,
        )
        label = point["name"] if not size_mb else f"{point['name']} ({_format_mb(size_mb)})"
        axes.annotate(
            label,
            (point["docs_per_s"], point["quality"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize="small",
        )
    axes.set_xscale("log")
    if points:
        rates = [p["docs_per_s"] for p in points]
        # Pad the range so labels at the edges are not clipped.
        axes.set_xlim(min(rates) / 2.0, max(rates) * 3.0)
        axes.set_ylim(*quality_limits([p["quality"] for p in points]))
    axes.set_xlabel("docs per second (log scale)")
    axes.set_ylabel(quality_name)
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def quality_limits(qualities: Sequence[float]) -> Tuple[float, float]:
    """The y range of a speed/quality plot: room above the best model for its marker (the
    largest, often the teacher's) and its label, below the worst for its marker."""
    lo, hi = float(min(qualities)), float(max(qualities))
    span = max(hi - lo, 0.05)
    return lo - 0.2 * span, hi + 0.3 * span


def plot_cascade(
    cascade: Mapping[str, Any],
    path: PathLike,
    title: str = "Cascade: accuracy vs escalation rate",
) -> Path:
    """Cascade accuracy against the fraction of docs escalated to the teacher.

    cascade (Mapping[str, Any]): `filter.cascade.cascade_curve`'s result: points (each with
        escalation_rate and accuracy), student_accuracy, teacher_accuracy and named points.
    path (Union[str, Path]): the PNG to write; parent directories are created.
    title (str): the figure title.
    RETURNS (Path): the path written.
    """
    points = cascade.get("points") or []
    if not points:
        raise ValueError("plot_cascade: the cascade has no points")
    figure = _new_figure(6.4, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(
        [p["escalation_rate"] for p in points],
        [p["accuracy"] for p in points],
        marker="o",
        color="C0",
        label="student + teacher on the least certain",
    )
    axes.axhline(
        cascade["student_accuracy"], color="C1", linestyle="--", linewidth=1, label="student alone"
    )
    axes.axhline(
        cascade["teacher_accuracy"], color="C2", linestyle=":", linewidth=1, label="teacher alone"
    )
    for index, (name, point) in enumerate((cascade.get("named") or {}).items()):
        axes.scatter(
            [point["escalation_rate"]],
            [point["accuracy"]],
            s=80,
            marker="*",
            color=f"C{3 + index}",
            zorder=3,
            label=f"{name} band (margin {point['margin']:.3f})",
        )
    axes.set_xlim(-0.02, 1.02)
    _label(axes, "fraction of docs escalated to the teacher", "accuracy", title, "lower right")
    return _save(figure, path)


def plot_learning_curve(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: PathLike,
    *,
    ylabel: str = "student macro-F1 on test",
    reference: Optional[Tuple[str, float]] = None,
    title: str = "Learning curve: student quality vs teacher calls",
) -> Path:
    """Student quality against teacher calls, one line per curve (e.g. per strategy).

    curves (Mapping[str, Mapping[str, Sequence[float]]]): name -> {"calls": [...], "mean":
        [...], and optionally "std": [...] (drawn as a band)}.
    path (Union[str, Path]): the PNG to write; parent directories are created.
    ylabel (str): what the values are.
    reference (Optional[Tuple[str, float]]): (name, value) drawn as a horizontal line, e.g.
        ("whole pool labelled", 0.97).
    title (str): the figure title.
    RETURNS (Path): the path written.
    """
    if not curves:
        raise ValueError("plot_learning_curve: no curves")
    figure = _new_figure(6.4, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    for index, (name, curve) in enumerate(curves.items()):
        calls = numpy.asarray(curve["calls"], dtype=float)
        mean = numpy.asarray(_nan_for_none(curve["mean"]), dtype=float)
        axes.plot(calls, mean, marker="o", color=f"C{index}", label=name)
        if curve.get("std") is not None:
            std = numpy.asarray(_nan_for_none(curve["std"]), dtype=float)
            axes.fill_between(calls, mean - std, mean + std, color=f"C{index}", alpha=0.15)
    if reference is not None:
        axes.axhline(reference[1], color="grey", linestyle="--", linewidth=1, label=reference[0])
    _label(axes, "teacher calls", ylabel, title, "lower right")
    return _save(figure, path)


def plot_threshold_curve(
    thresholds: Sequence[float],
    precision: Sequence[Optional[float]],
    recall: Sequence[Optional[float]],
    f1: Sequence[Optional[float]],
    path: PathLike,
    title: str = "Threshold tuning",
    chosen: Optional[float] = None,
) -> Path:
    """Precision, recall and F1 against the decision threshold, with the chosen one marked.

    thresholds (Sequence[float]): the thresholds tried, ascending.
    precision (Sequence[Optional[float]]): precision at each; None where undefined (no
        positive predictions), drawn as a gap.
    recall (Sequence[Optional[float]]): recall at each.
    f1 (Sequence[Optional[float]]): F1 at each.
    path (Union[str, Path]): the PNG to write; parent directories are created.
    title (str): the figure title.
    chosen (Optional[float]): the threshold picked, drawn as a vertical line.
    RETURNS (Path): the path written.
    """
    n = len(thresholds)
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        if len(values) != n:
            raise ValueError(
                f"plot_threshold_curve: {n} thresholds but {len(values)} {name} values; "
                "pass one value per threshold"
            )
    figure = _new_figure(6.4, 4.4)
    axes = figure.add_subplot(1, 1, 1)
    for name, values in (("precision", precision), ("recall", recall), ("F1", f1)):
        axes.plot(
            list(thresholds),
            _nan_for_none(values),
            label=name,
            linewidth=2.0 if name == "F1" else 1.2,
        )
    if chosen is not None:
        axes.axvline(chosen, color="black", linestyle=":", linewidth=1)
        axes.annotate(
            f"chosen {chosen:.3g}",
            (chosen, 0.02),
            textcoords="offset points",
            xytext=(4, 0),
            fontsize="small",
        )
    axes.set_ylim(0, 1.02)
    _label(axes, "threshold", "score", title, "best")
    return _save(figure, path)


def _label(axes: Any, xlabel: str, ylabel: str, title: str, legend_loc: str) -> None:
    """Axis labels, title, legend and grid of a line plot."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(loc=legend_loc, fontsize="small")
    axes.grid(alpha=0.3)


def _new_figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "spacy-distill's evaluation plots need matplotlib: "
            "pip install 'spacy-distill[evaluate]' (or pip install matplotlib)"
        ) from err
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)  # attaches itself to the figure: savefig then renders with Agg
    return figure


def _save(figure: Any, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A tight bounding box keeps rotated tick labels and legends inside the image.
    figure.savefig(str(path), dpi=DPI, bbox_inches="tight")
    return path


def _bins_and_ece(curve: Any, name: str):
    if isinstance(curve, Mapping):
        if "bins" not in curve:
            raise ValueError(
                f"plot_reliability: curve '{name}' is a dict without 'bins'; pass the list of "
                "bins, or a dict with them under 'bins'"
            )
        return list(curve["bins"]), curve.get("ece")
    return list(curve), None


def _format_mb(size_mb: float) -> str:
    return f"{size_mb:,.0f} MB" if size_mb >= 100 else f"{size_mb:.3g} MB"


def _nan_for_none(values: Sequence[Optional[float]]) -> List[float]:
    return [math.nan if value is None else float(value) for value in values]
