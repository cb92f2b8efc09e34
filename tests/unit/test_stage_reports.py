from tpt_stages.stage import merge_shard_reports


def test_shard_reports_add_numbers_and_nested_counters_and_keep_the_rest():
    a = {"samples": 10, "verdicts": {"correct": 3, "wrong": 7}, "sandbox": "runsc", "tokens": 100,
         "generate_seconds": 2.0, "tokens_per_second": 50.0}  # fmt: skip
    b = {"samples": 5, "verdicts": {"correct": 1, "timeout": 4}, "sandbox": "runsc", "tokens": 60,
         "generate_seconds": 3.0, "tokens_per_second": 20.0}  # fmt: skip
    merged = merge_shard_reports([a, b])
    assert merged["samples"] == 15
    assert merged["verdicts"] == {"correct": 4, "wrong": 7, "timeout": 4}
    assert merged["sandbox"] == "runsc"
    assert merged["tokens"] == 160 and merged["tokens_per_second"] == 70.0
    assert a["verdicts"] == {"correct": 3, "wrong": 7}, "inputs are not modified"


def test_a_single_report_merges_to_itself():
    r = {"selected": 3, "cached": True, "graders": {"strict": {"pass1": 0.5}}}
    assert merge_shard_reports([r]) == r
