"""`tpt tiny-model` logs each step once: an evaluated step's line carries its loss and its quick Pass@1."""

from __future__ import annotations

import re

from tpt_stages import tinymodel


def test_each_logged_step_appears_once(tmp_path):
    lines: list[str] = []
    # A loss line at 2; 4 is evaluated too (a target no model reaches keeps it going).
    cfg = tinymodel.Pretraining(target_pass1=1.01, max_steps=4, batch_size=2, log_every=2, eval_start=4,
                                eval_every=2, eval_problems=4, eval_max_tokens=8)  # fmt: skip
    tinymodel.build_tiny_model(tmp_path, pretraining=cfg, log=lines.append)
    assert len(lines) == 2, lines
    assert re.fullmatch(r"step 2: loss \d+\.\d{3}", lines[0]), lines
    assert re.fullmatch(r"step 4: loss \d+\.\d{3}, quick Pass@1 \d\.\d{3}", lines[1]), lines
