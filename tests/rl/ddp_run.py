"""Entry point of the 2-process test: ``accelerate launch --num_processes 2 tests/rl/ddp_run.py CONFIG.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl

if __name__ == "__main__":
    from accelerate import PartialState

    config = RLConfig.model_validate(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    result = train_rl(config)
    state = PartialState()
    print(json.dumps({"rank": state.process_index, "world": state.num_processes, "steps": result.steps}), flush=True)
