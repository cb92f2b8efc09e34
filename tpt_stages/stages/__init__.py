"""The stage programs. Each is a function `(Context, StageOutput) -> report`; `stage.run_stage` makes it
idempotent and commits it."""
