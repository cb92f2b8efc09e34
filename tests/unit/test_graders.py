import random
import re

import pytest

from tpt_stages.graders import extract_gold, gold_value, normalized, strict
from tpt_stages.records import Verdict

C, W, N = Verdict.correct, Verdict.wrong, Verdict.no_answer

# The reference `strict` must equal: the paper authors' own evaluation rule, soheilzi/TPT `evmath.py` (commit
# 2db1e9acea8dec4184f54c6e65ef16d5f75b467e: `ANS_RE_GSM8k`, `extract_answer_gsm8k`, `evaluate_gsm8k_solution`).
# Their pattern, `re.search` (the first match), the capture stripped; correct iff there was a match and it
# equals the gold string (the dataset's `solnum`, as written). Kept here apart from tpt_stages.graders so
# that the tests ask the paper's rule, not our restatement of it.
PAPER_ANSWER_RE = re.compile(r"####\s*(-?[\d.,]+)")


def paper_extract(completion: str) -> str | None:
    match = PAPER_ANSWER_RE.search(completion)
    return match.group(1).strip() if match else None


def paper_correct(completion: str, gold: str) -> bool:
    answer = paper_extract(completion)
    return answer is not None and answer == gold


def assert_strict_is_the_papers(completion: str, gold: str) -> None:
    grade = strict(completion, gold)
    assert grade.answer == paper_extract(completion), repr(completion)
    assert (grade.verdict is C) == paper_correct(completion, gold), repr(completion)
    assert grade.verdict is (N if grade.answer is None else C if grade.answer == gold else W)


# completion, gold, strict (verdict, answer), normalized (verdict, answer)
CASES = [
    ("So 1600.\n#### 1600", "1600", (C, "1600"), (C, "1600")),
    # thousands separator: the paper's check wants the gold's formatting
    ("#### 1,600", "1600", (W, "1,600"), (C, "1600")),
    # `$` right after the marker: the paper's regex needs the number right after `#### `
    ("#### $1,600", "1600", (N, None), (C, "1600")),
    ("#### $1600", "1600", (N, None), (C, "1600")),
    # sentence-ending period
    ("#### 12.", "12", (W, "12."), (C, "12")),
    ("#### 12.0", "12", (W, "12.0"), (C, "12.0")),
    ("#### 12.50", "12.5", (W, "12.50"), (C, "12.50")),
    # two markers: strict takes the first, normalized the last (the model's final word)
    ("#### 3\nWait, that is wrong.\n#### 4", "4", (W, "3"), (C, "4")),
    ("#### 4\nDouble-checking: #### 3", "4", (C, "4"), (W, "3")),
    # a marker without a number is skipped by strict's search, but is normalized's last word
    ("#### 5\n####", "5", (C, "5"), (N, None)),
    ("####\n#### 5", "5", (C, "5"), (C, "5")),
    # no marker at all, or no number after it
    ("The answer is 42.", "42", (N, None), (N, None)),
    ("#### forty-two", "42", (N, None), (N, None)),
    ("", "42", (N, None), (N, None)),
    # negative numbers, with the sign on either side of `$`
    ("#### -5", "-5", (C, "-5"), (C, "-5")),
    ("#### -5", "5", (W, "-5"), (W, "-5")),
    ("#### -$5", "-5", (N, None), (C, "-5")),
    ("#### $-5", "-5", (N, None), (C, "-5")),
    # text or an end-of-sequence token after the answer
    ("#### 72 apples in total.", "72", (C, "72"), (C, "72")),
    ("#### 72<eos>", "72", (C, "72"), (C, "72")),
    ("#### 72</s><|eot_id|>", "72", (C, "72"), (C, "72")),
    ("#### 72\n\nI hope this helps!", "72", (C, "72"), (C, "72")),
    # markdown the paper's Gemma traces show (`**##### 38**`): four of the five hashes are a marker
    ("**##### 38**", "38", (C, "38"), (C, "38")),
    ("####**38**", "38", (N, None), (C, "38")),
    # whitespace after the marker: the paper's `\\s*` takes none, several, a tab or a newline
    ("####38", "38", (C, "38"), (C, "38")),
    ("####  280", "280", (C, "280"), (C, "280")),
    ("####\t7", "7", (C, "7"), (C, "7")),
    ("####\n7", "7", (C, "7"), (C, "7")),
    ("####\n\n 7", "7", (C, "7"), (C, "7")),
    ("####-3", "-3", (C, "-3"), (C, "-3")),
    ("#### $5", "5", (N, None), (C, "5")),
    ("####$5\n####5", "5", (C, "5"), (C, "5")),  # the search skips the `$` marker, finds the second
    ("#### 1,000", "1000", (W, "1,000"), (C, "1000")),
    ("#### 2,125", "2,125", (C, "2,125"), (C, "2125")),  # a gold the paper's subset writes with a comma
    ("####7\n#### 8", "8", (W, "7"), (C, "8")),  # two markers: the first counts
    ("#### -", "1", (N, None), (N, None)),
    ("#### .", "1", (W, "."), (N, None)),
    ("#### ,5", "5", (W, ",5"), (N, None)),
    # fractions and decimals compare as numbers
    ("#### 1/2", "0.5", (W, "1"), (C, "1/2")),
    ("#### 0.5", "0.5", (C, "0.5"), (C, "0.5")),
    ("#### .5", "0.5", (W, ".5"), (C, ".5")),
    ("#### 1/0", "1", (C, "1"), (N, None)),  # strict reads only the `1`
    # a wrong number is wrong, whatever the formatting
    ("#### 1,601", "1600", (W, "1,601"), (W, "1601")),
    ("#### 160", "1600", (W, "160"), (W, "160")),
    # gold written with a comma (not GSM8K's style): strict compares strings as written
    ("#### 1600", "1,600", (W, "1600"), (C, "1600")),
    ("#### 1,600", "1,600", (C, "1,600"), (C, "1600")),
]


@pytest.mark.parametrize(("completion", "gold", "want_strict", "want_normalized"), CASES)
def test_graders(completion, gold, want_strict, want_normalized):
    s, n = strict(completion, gold), normalized(completion, gold)
    assert (s.verdict, s.answer) == want_strict
    assert (n.verdict, n.answer) == want_normalized
    assert_strict_is_the_papers(completion, gold)


def test_strict_is_the_papers_rule_on_random_text():
    # Random strings over the characters the two patterns care about, and golds in and out of them.
    rng = random.Random(0)
    alphabet = ["####", "#", " ", "  ", "\t", "\n", "$", "-", ".", ",", "*", "x", *"0123456789"]
    for _ in range(20_000):
        completion = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        gold = paper_extract(completion) if rng.random() < 0.5 else rng.choice(["5", "-3", "1,000", "12"])
        assert_strict_is_the_papers(completion, gold or "0")


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
        ("steps\n#### 1,600", "1,600"),  # as written: strict compares strings
        ("steps\n####  -3 \n", "-3"),
        ("a #### 1 in the working\n#### 2", "2"),
    ],
)
def test_extract_gold(text, gold):
    assert extract_gold(text) == gold


@pytest.mark.parametrize("text", ["no marker here", "steps\n####   \n"])
def test_extract_gold_rejects_answers_without_a_final_line(text):
    with pytest.raises(ValueError, match="####"):
        extract_gold(text)


def test_gold_value_reads_numbers_and_rejects_words():
    assert gold_value("$1,600") == 1600
    assert gold_value("-2.50") == gold_value("-5/2")
    with pytest.raises(ValueError, match="not a number"):
        gold_value("forty")
