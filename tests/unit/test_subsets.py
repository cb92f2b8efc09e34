"""The paper's evaluation sets: the 500 GSM8K test indices (checked against question hashes) and the
CodeContests problems without images, on look-alike data (the hub is not reachable in tests)."""

import json
import re

import pytest

from tpt_stages import subsets
from tpt_stages.datasets import DatasetError, load
from tpt_stages.spec import Dataset, SpecError, Subset, TaskKind, parse

PAPER = Subset.paper_gsm8k_test500


def test_the_shipped_index_is_the_papers_500_rows():
    table = subsets.paper_gsm8k_test500()
    assert len(table) == 500
    assert min(table) == 3 and max(table) == 1315 < 1319  # GSM8K's test split has 1319 rows
    assert all(re.fullmatch(r"[0-9a-f]{12}", h) for h in table.values()) and len(set(table.values())) == 500
    # Row 3 of the GSM8K test split (MIT-licensed), the first the paper picked, as the hub writes it.
    question = "James decides to run 3 sprints 3 times a week.  He runs 60 meters each sprint.  How many total meters does he run a week?"  # fmt: skip
    assert table[3] == subsets.question_hash(question)
    assert 0 not in table  # "Janet's ducks" is not in the paper's subset


def lookalike_split(n: int) -> list[dict]:
    """GSM8K-shaped rows (question, worked answer ending in `#### N`), like the test split, in order."""
    return [
        {"question": f"Ana has {i} apples and buys {i + 2} more. How many apples does she have?",
         "answer": f"{i} + {i + 2} = {2 * i + 2}\n#### {2 * i + 2}"}
        for i in range(n)
    ]  # fmt: skip


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def lookalike_index(monkeypatch):
    """The shipped index swapped for one of the look-alike split: indices 3, 8 and 17."""
    rows = lookalike_split(30)
    table = {i: subsets.question_hash(rows[i]["question"]) for i in (3, 8, 17)}
    monkeypatch.setattr(subsets, "paper_gsm8k_test500", lambda: table)
    return rows


def test_the_subset_picks_the_indexed_rows_in_source_order(tmp_path, lookalike_index):
    rows = lookalike_index
    loaded = load(Dataset(uri=write(tmp_path / "test.jsonl", rows), subset=PAPER), TaskKind.math, split_hint="test")
    assert [p.question for p in loaded.problems] == [rows[i]["question"] for i in (3, 8, 17)]
    assert [p.answer for p in loaded.problems] == ["8", "18", "36"]
    assert loaded.subset_of == 30


def test_respacing_and_case_do_not_count_but_words_do(tmp_path, lookalike_index):
    rows = [dict(r) for r in lookalike_index]
    rows[3]["question"] = "  " + rows[3]["question"].upper().replace(" ", "\n ")
    path = write(tmp_path / "test.jsonl", rows)
    assert len(load(Dataset(uri=path, subset=PAPER), TaskKind.math, split_hint="test").problems) == 3
    rows[8]["question"] = rows[8]["question"].replace("apples", "pears")
    with pytest.raises(DatasetError, match=r"1 of the 3 indexed rows .*test.jsonl line 9 \(index 8\)"):
        load(Dataset(uri=write(tmp_path / "test.jsonl", rows), subset=PAPER), TaskKind.math, split_hint="test")


def test_a_source_in_another_order_fails_naming_the_rows(tmp_path, lookalike_index):
    rows = lookalike_index[::-1]
    with pytest.raises(DatasetError) as e:
        load(Dataset(uri=write(tmp_path / "test.jsonl", rows), subset=PAPER), TaskKind.math, split_hint="test")
    message = str(e.value)
    assert "subset paperGsm8kTest500: 3 of the 3 indexed rows do not hold the question the subset indexed" in message
    assert "test.jsonl line 4 (index 3)" in message and "order or text differs" in message


def test_a_source_shorter_than_the_index_fails(tmp_path, lookalike_index):
    path = write(tmp_path / "test.jsonl", lookalike_index[:17])
    with pytest.raises(DatasetError, match="the source has 17 rows, but the subset indexes rows up to 17"):
        load(Dataset(uri=path, subset=PAPER), TaskKind.math, split_hint="test")


def test_the_paper_subset_of_a_hf_split(tmp_path, lookalike_index, monkeypatch):
    """hf:// rows are indexed as the split orders them (`datasets.load_dataset` reads a local file here)."""
    import datasets

    real, local = datasets.load_dataset, write(tmp_path / "test.jsonl", lookalike_index)

    def from_local(path, name=None, *, split):
        assert (path, name, split) == ("openai/gsm8k", "main", "test")
        return real("json", data_files={split: local}, split=split, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", from_local)
    loaded = load(Dataset(uri="hf://openai/gsm8k/main", split="test", subset=PAPER), TaskKind.math, split_hint="test")
    assert [p.answer for p in loaded.problems] == ["8", "18", "36"] and loaded.subset_of == 30


def test_without_images_drops_statements_with_an_image_tag(tmp_path):
    def row(i, text):
        return {"id": f"cc-{i}", "description": text, "tests": [{"input": "1\n", "output": "1\n"}]}

    rows = [row(0, "Print n."), row(1, "The grid looks like this:\n\n<image>\n\nPrint n."), row(2, "See <IMAGE>."),
            row(3, "Print the image of n under f.")]  # fmt: skip
    loaded = load(Dataset(uri=write(tmp_path / "cc.jsonl", rows), subset=Subset.without_images), TaskKind.code,
                  split_hint="test")  # fmt: skip
    assert [p.id for p in loaded.problems] == ["cc-0", "cc-3"] and loaded.subset_of == 4


@pytest.mark.parametrize(("kind", "subset"), [("code", "paperGsm8kTest500"), ("math", "withoutImages")])
def test_a_subset_for_another_task_kind_is_a_spec_error(kind, subset):
    doc = {
        "apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun", "metadata": {"name": "x"},
        "spec": {"model": {"uri": "m"}, "task": {"kind": kind, "train": {"uri": "a.jsonl"},
                                                  "test": {"uri": "b.jsonl", "subset": subset}}},
    }  # fmt: skip
    with pytest.raises(SpecError, match=f"task.test.subset '{subset}' is for"):
        parse(doc)


def test_prepare_reports_what_each_subset_kept(tmp_path, lookalike_index, monkeypatch):
    from tpt_stages import layout
    from tpt_stages.stage import Context, run_stage
    from tpt_stages.stages import prepare
    from tpt_stages.storage import open_store

    monkeypatch.setenv("TPT_REPORT_FILE", str(tmp_path / "report.json"))
    train = [{"question": f"Bo has {i} pens and loses one. How many are left?", "answer": f"x\n#### {i - 1}"}
             for i in range(2, 6)]  # fmt: skip
    doc = {
        "apiVersion": "tpt.dev/v1alpha1", "kind": "SelfImprovementRun", "metadata": {"name": "sub"},
        "spec": {"model": {"uri": "m"}, "storage": {"uri": f"file://{tmp_path / 'runs'}"},
                 "task": {"kind": "math", "train": {"uri": write(tmp_path / "train.jsonl", train)},
                          "test": {"uri": write(tmp_path / "test.jsonl", lookalike_index),
                                   "subset": "paperGsm8kTest500"}}},
    }  # fmt: skip
    run = parse(doc)
    report = run_stage(layout.Stage.prepare, prepare.run, Context(run, open_store(run.run_uri()), 0))
    assert report["subsets"] == {"test": {"subset": "paperGsm8kTest500", "kept": 3, "of": 30}}
    assert (report["train_problems"], report["test_problems"]) == (4, 3)
