"""Entry point of the 2-process test: ``accelerate launch --num_processes 2 tests/rl/ddp_run.py CONFIG.json``.

Each process writes its report to ``report-<rank>.json`` beside the config: two processes
printing to one pipe can interleave their lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl

if __name__ == "__main__":
    from accelerate import PartialState

    config_file = Path(sys.argv[1])
    config = RLConfig.model_validate(json.loads(config_file.read_text(encoding="utf-8")))
    result = train_rl(config)
    state = PartialState()
    report = {"rank": state.process_index, "world": state.num_processes, "steps": result.steps}
    (config_file.parent / f"report-{state.process_index}.json").write_text(json.dumps(report), encoding="utf-8")
