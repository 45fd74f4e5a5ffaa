"""Behavioural test suites (CheckList, Ribeiro et al., 2020): the JSONL file format, its loader,
and the expansion of a test into cases.

A suite is a JSONL file, one JSON object per line (blank lines and lines starting with `#` are
skipped). Each object has a `kind`:

    {"kind": "suite", "name": "sentiment", "labels": {"positive": ["positive", "pos"], ...}}
    {"kind": "lexicon", "name": "pos_adj", "words": ["great", "lovely", "kind"]}
    {"kind": "MFT", "test": "pos_person", "templates": ["{name} is a {pos_adj} person"],
     "label": "positive"}
    {"kind": "INV", "test": "identity_swap", "templates": ["I am a {identity} person."],
     "perturb": {"swap": "identity"}}
    {"kind": "DIR", "test": "negation", "texts": ["The food was good."], "label": "positive",
     "direction": "down", "min_change": 0.05, "perturb": {"replace": {"was": "was not"}}}

- `suite` (at most one): the suite's `name` and `labels`, suite label -> the model label names
  it may have (the first one the model has is used; a model label equal to the suite label
  always matches). `run_suite(label_map=...)` overrides it for one run.
- `lexicon`: a word list that templates (`{name}` slots) and perturbations name. Lexicons of the
  same name in several files are merged, so a user file can add names to a shipped suite.
- tests (`MFT`, `INV`, `DIR`), each with a unique `test` name, an optional `description`, and
  base texts from `texts` (a list) and/or `templates` (every combination of the slots' lexicon
  words; the same slot twice takes the same word; a slot that opens a template is capitalised).
  `max_cases` (default 50) caps the base texts; a seeded sample picks which.
  - `MFT` (minimum functionality): each base text must get `label` (exclusive models: the
    argmax; multi-label: a probability >= the run's threshold).
  - `INV` (invariance): each variant made by `perturb` must get the base text's verdict (the
    argmax, or the set of labels over the threshold; with `label`, that label's decision).
  - `DIR` (directional): each variant must move `label`'s probability in `direction` ("up" or
    "down") by at least `min_change` (default 0) less `tolerance` (default 0; CheckList's
    allowance for a move the wrong way).
- `perturb` (one key, plus `n`, the most variants per base text; default all, or 1 for an
  augmenter): `{"swap": LEX}` replaces the first word of lexicon LEX in the text with each
  other word of it; `{"append": WORDS}` / `{"prepend": WORDS}` adds each word (WORDS: a list,
  or a lexicon's name); `{"replace": {"old": "new"}}` replaces whole words (case-insensitive);
  `{"case": "upper" | "lower" | "title"}`; `{"augmenter": "spacy-distill.KeyboardTypos.v1",
  "params": {"rate": 0.1}}` runs a registered text augmenter. A base text that a perturbation
  leaves unchanged is no case.

`load_suite` reads one or more files (a path, or the name of a shipped suite: "sentiment",
"moderation"); errors name the file, line and field.
"""

import itertools
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import srsly

from ..augment.base import Augmenter, copy_case, derive_rng
from ..errors import DistillError
from ..registry import registry

SUITES_DIR = Path(__file__).parent / "suites"
DEFAULT_SUITES = {
    "sentiment": SUITES_DIR / "sentiment.jsonl",
    "moderation": SUITES_DIR / "moderation.jsonl",
}
TEST_KINDS = ("MFT", "INV", "DIR")
PERTURBATIONS = ("swap", "append", "prepend", "replace", "case", "augmenter")
CASE_MODES = ("upper", "lower", "title")
DEFAULT_MAX_CASES = 50
FIELDS = {
    "suite": {"kind", "name", "labels", "description"},
    "lexicon": {"kind", "name", "words"},
    "test": {"kind", "test", "description", "texts", "templates", "max_cases", "label", "perturb"}
    | {"direction", "min_change", "tolerance"},
}


@dataclass
class Perturbation:
    """How an INV or DIR test turns a base text into variants."""

    kind: str
    words: Tuple[str, ...] = ()
    replacements: Tuple[Tuple[str, str], ...] = ()
    mode: str = ""
    augmenter: Optional[Augmenter] = None
    n: Optional[int] = None

    def variants(self, text: str, rng: random.Random) -> List[str]:
        """The distinct variants of a text that differ from it (at most `n`)."""
        if self.kind == "augmenter":
            assert self.augmenter is not None
            return self.augmenter.augment(text, rng, self.n or 1)
        if self.kind == "swap":
            match = _words_pattern(self.words).search(text)
            found = (
                []
                if match is None
                else [
                    text[: match.start()] + _swap_case(text, match, word) + text[match.end() :]
                    for word in self.words
                    if word.lower() != match.group().lower()
                ]
            )
        elif self.kind == "append":
            found = [f"{text.rstrip()} {word}" for word in self.words]
        elif self.kind == "prepend":
            found = [f"{word} {text.lstrip()}" for word in self.words]
        elif self.kind == "replace":
            new = text
            for old, replacement in self.replacements:
                new = _words_pattern((old,)).sub(
                    lambda m, r=replacement: copy_case(m.group(), r), new
                )
            found = [new]
        else:
            found = [getattr(text, self.mode)()]
        found = [v for v in dict.fromkeys(found) if v != text]
        if self.n is not None and len(found) > self.n:
            found = [found[i] for i in sorted(rng.sample(range(len(found)), self.n))]
        return found


@dataclass
class CheckTest:
    """One test of a suite: its kind, base texts and expectation."""

    name: str
    kind: str
    where: str
    texts: Tuple[str, ...]
    description: str = ""
    label: Optional[str] = None
    perturbation: Optional[Perturbation] = None
    direction: str = "up"
    min_change: float = 0.0
    tolerance: float = 0.0
    max_cases: int = DEFAULT_MAX_CASES


@dataclass
class Case:
    """A base text and the variants its test compares it with (none for an MFT)."""

    text: str
    variants: Tuple[str, ...] = ()


@dataclass
class Suite:
    """A loaded suite: its name, label names, lexicons and tests (in file order)."""

    name: str
    labels: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    lexicons: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    tests: List[CheckTest] = field(default_factory=list)
    paths: Tuple[str, ...] = ()


def load_suite(*sources: Union[str, Path]) -> Suite:
    """Read a suite from one or more JSONL files, merged in order.

    sources (Union[str, Path]): paths, or names of shipped suites (`DEFAULT_SUITES`).
    RETURNS (Suite): the suite; its name is the first `suite` line's, else the first file's stem.
    """
    if not sources:
        raise DistillError("load_suite needs at least one suite file")
    paths = [DEFAULT_SUITES.get(str(s), Path(s)) for s in sources]
    suite = Suite(name="", paths=tuple(str(p) for p in paths))
    raw_tests: List[Tuple[str, Dict[str, Any]]] = []
    for path in paths:
        if not path.is_file():
            raise DistillError(
                f"{path}: suite file not found (shipped suites: {sorted(DEFAULT_SUITES)})"
            )
        for where, row in _read_lines(path):
            kind = row["kind"]
            if kind == "suite":
                _read_header(suite, row, where)
            elif kind == "lexicon":
                name = _string(row, "name", where)
                words = _strings(row, "words", where)
                suite.lexicons[name] = tuple(dict.fromkeys(suite.lexicons.get(name, ()) + words))
            else:
                raw_tests.append((where, row))
    suite.name = suite.name or paths[0].stem
    seen: Dict[str, str] = {}
    for where, row in raw_tests:
        test = _read_test(row, where, suite.lexicons)
        if test.name in seen:
            raise DistillError(
                f"{where}: field 'test': '{test.name}' is already defined at {seen[test.name]}"
            )
        seen[test.name] = where
        suite.tests.append(test)
    if not suite.tests:
        raise DistillError(
            f"{', '.join(suite.paths)}: the suite has no tests (kinds: {list(TEST_KINDS)})"
        )
    return suite


def build_cases(test: CheckTest, seed: int = 0) -> List[Case]:
    """The cases of a test: at most `max_cases` base texts (a sample fixed by the seed and the
    test's name), each with its variants; base texts without a variant are left out."""
    texts = list(test.texts)
    if len(texts) > test.max_cases:
        picked = derive_rng(seed, test.name, "sample").sample(range(len(texts)), test.max_cases)
        texts = [texts[i] for i in sorted(picked)]
    if test.perturbation is None:
        return [Case(text) for text in texts]
    cases = []
    for text in texts:
        variants = test.perturbation.variants(text, derive_rng(seed, test.name, text))
        if variants:
            cases.append(Case(text, tuple(variants)))
    return cases


def _words_pattern(words: Sequence[str]) -> "re.Pattern[str]":
    """Any of the words as a whole word, case-insensitive, longest first (multi-word terms
    before their parts)."""
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in ordered) + r")(?!\w)", re.I)


def _swap_case(text: str, match: "re.Match[str]", word: str) -> str:
    """A swapped-in word as the lexicon writes it ("Muslim", "gay"), except at the start of the
    text or in an all-caps word, where it takes the case of the word it replaces."""
    if match.start() == 0 or (match.group().isupper() and len(match.group()) > 1):
        return copy_case(match.group(), word)
    return word


def _read_lines(path: Path):
    with path.open(encoding="utf8") as lines:
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = srsly.json_loads(line)
            except ValueError as err:
                raise DistillError(f"{where}: not a JSON object ({err})") from err
            if not isinstance(row, dict):
                raise DistillError(f"{where}: not a JSON object")
            kind = row.get("kind")
            if kind not in ("suite", "lexicon") + TEST_KINDS:
                raise DistillError(
                    f"{where}: field 'kind' is {kind!r}; expected one of {['suite', 'lexicon', *TEST_KINDS]}"
                )
            allowed = FIELDS.get(kind, FIELDS["test"])
            unknown = sorted(set(row) - allowed)
            if unknown:
                raise DistillError(
                    f"{where}: unknown field(s) {unknown} for kind {kind}; allowed: {sorted(allowed)}"
                )
            yield where, row


def _read_header(suite: Suite, row: Dict[str, Any], where: str) -> None:
    if suite.name:
        raise DistillError(
            f"{where}: a second 'suite' line (the suite is already named '{suite.name}')"
        )
    suite.name = _string(row, "name", where)
    labels = row.get("labels", {})
    if not isinstance(labels, dict):
        raise DistillError(
            f"{where}: field 'labels' must map each suite label to a list of model label names"
        )
    for label, names in labels.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DistillError(f"{where}: field 'labels.{label}' must be a list of label names")
        suite.labels[label] = tuple(names)


def _read_test(row: Dict[str, Any], where: str, lexicons: Dict[str, Tuple[str, ...]]) -> CheckTest:
    kind = row["kind"]
    name = _string(row, "test", where)
    texts = _strings(row, "texts", where) if "texts" in row else ()
    for template in _strings(row, "templates", where) if "templates" in row else ():
        texts += _expand(template, lexicons, where)
    if not texts:
        raise DistillError(f"{where}: test '{name}' needs field 'texts' or 'templates'")
    test = CheckTest(
        name, kind, where, tuple(dict.fromkeys(texts)), description=str(row.get("description", ""))
    )
    test.max_cases = _number(row, "max_cases", where, DEFAULT_MAX_CASES, integer=True, least=1)
    if kind != "INV" or "label" in row:
        test.label = _string(row, "label", where)
    if kind == "MFT":
        if "perturb" in row:
            raise DistillError(f"{where}: field 'perturb': an MFT test has no perturbation")
        return test
    if "perturb" not in row:
        raise DistillError(
            f"{where}: field 'perturb' is missing (a {kind} test needs one of {list(PERTURBATIONS)})"
        )
    test.perturbation = _read_perturbation(row["perturb"], where, lexicons)
    if kind == "DIR":
        test.direction = row.get("direction", "up")
        if test.direction not in ("up", "down"):
            raise DistillError(
                f"{where}: field 'direction' is {test.direction!r}; expected 'up' or 'down'"
            )
        test.min_change = _number(row, "min_change", where, 0.0, least=0)
        test.tolerance = _number(row, "tolerance", where, 0.0, least=0)
    return test


def _read_perturbation(spec: Any, where: str, lexicons: Dict[str, Tuple[str, ...]]) -> Perturbation:
    keys = [k for k in PERTURBATIONS if isinstance(spec, dict) and k in spec]
    extra = (
        sorted(set(spec) - set(PERTURBATIONS) - {"n", "params"}) if isinstance(spec, dict) else []
    )
    if len(keys) != 1 or extra:
        raise DistillError(
            f"{where}: field 'perturb' must be an object with one of {list(PERTURBATIONS)} (and 'n')"
        )
    kind, value = keys[0], spec[keys[0]]
    n = _number(spec, "n", where, None, integer=True, least=1, label="perturb.n")
    out = Perturbation(kind, n=n)
    if kind in ("swap", "append", "prepend"):
        if isinstance(value, str) and value in lexicons:
            out.words = lexicons[value]
        elif (
            kind != "swap"
            and isinstance(value, list)
            and value
            and all(isinstance(w, str) for w in value)
        ):
            out.words = tuple(value)
        else:
            raise DistillError(
                f"{where}: field 'perturb.{kind}' must name a lexicon ({sorted(lexicons)})"
                + ("" if kind == "swap" else " or be a list of strings")
            )
    elif kind == "replace":
        if (
            not isinstance(value, dict)
            or not value
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise DistillError(
                f"{where}: field 'perturb.replace' must map words to their replacements"
            )
        out.replacements = tuple(value.items())
    elif kind == "case":
        if value not in CASE_MODES:
            raise DistillError(
                f"{where}: field 'perturb.case' is {value!r}; expected one of {list(CASE_MODES)}"
            )
        out.mode = value
    else:
        params = spec.get("params", {})
        try:
            make = registry.spacy_distill_text_augmenters.get(value)
        except Exception as err:
            raise DistillError(
                f"{where}: field 'perturb.augmenter': no text augmenter {value!r} "
                f"(registered: {sorted(registry.spacy_distill_text_augmenters.get_all())})"
            ) from err
        try:
            out.augmenter = make(**params) if isinstance(params, dict) else None
        except (TypeError, ValueError) as err:
            raise DistillError(f"{where}: field 'perturb.params': {err}") from err
        if out.augmenter is None or out.augmenter.seedless:
            raise DistillError(
                f"{where}: field 'perturb.params' must be an object; '{value}' must rewrite a text"
            )
    return out


def _expand(template: str, lexicons: Dict[str, Tuple[str, ...]], where: str) -> Tuple[str, ...]:
    try:
        slots = list(
            dict.fromkeys(n for _, n, _, _ in string.Formatter().parse(template) if n is not None)
        )
    except ValueError as err:
        raise DistillError(f"{where}: field 'templates': {template!r}: {err}") from err
    for slot in slots:
        if slot not in lexicons:
            raise DistillError(
                f"{where}: field 'templates': {template!r} names '{{{slot}}}', which is no lexicon "
                f"({sorted(lexicons)})"
            )
    texts = (
        template.format(**dict(zip(slots, words)))
        for words in itertools.product(*(lexicons[s] for s in slots))
    )
    # A slot that opens the text opens a sentence: "white people ..." -> "White people ...".
    opens = template.startswith("{") and not template.startswith("{{")
    return tuple(text[:1].upper() + text[1:] if opens else text for text in texts)


def _string(row: Dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DistillError(f"{where}: field '{key}' must be a non-empty string (got {value!r})")
    return value


def _strings(row: Dict[str, Any], key: str, where: str) -> Tuple[str, ...]:
    value = row.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise DistillError(f"{where}: field '{key}' must be a non-empty list of non-empty strings")
    return tuple(value)


def _number(
    row: Dict[str, Any],
    key: str,
    where: str,
    default: Any,
    *,
    integer: bool = False,
    least: Optional[float] = None,
    label: Optional[str] = None,
) -> Any:
    value = row.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or (least is not None and value < least):
        kind = "an integer" if integer else "a number"
        bound = "" if least is None else f" >= {least}"
        raise DistillError(f"{where}: field '{label or key}' must be {kind}{bound} (got {value!r})")
    return value if integer else float(value)
