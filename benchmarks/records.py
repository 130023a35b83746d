"""Run records: results/runs/<run-id>/{config.json, history.jsonl, summary.json}.

config.json is written when a run starts, history.jsonl grows one line per event, summary.json is
written atomically and last: a folder without it is an unfinished run and is redone. A finished run is
never overwritten: --force renames its folder aside before redoing it.
"""

import hashlib
import json
import os
import re
import time
from pathlib import Path

from benchmarks.errors import UserError


def run_id(config: dict) -> str:
    """Readable and stable: the same config always maps to the same folder."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    dataset = re.sub(r"[^A-Za-z0-9]+", "-", Path(config["dataset"].split(":", 1)[-1]).stem).strip("-")
    return f"{config['method']}-{dataset}-{config['arch']}-s{config['seed']}-{digest}"


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


class RunDir:
    def __init__(self, root: str | Path, config: dict):
        self.id = run_id(config)
        self.path = Path(root) / self.id
        self.config = config

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def finished(self) -> bool:
        return self.summary_path.exists()

    def start(self, force: bool = False) -> None:
        """Make the folder, keep a finished one aside if forced, and start a fresh history."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if force and self.finished():
                stamp = time.strftime("%Y%m%dT%H%M%S")
                aside = self.path.with_name(f"{self.id}.replaced-{stamp}")
                for i in range(1, 1000):  # two --force runs in one second must not collide
                    if not aside.exists():
                        break
                    aside = self.path.with_name(f"{self.id}.replaced-{stamp}-{i}")
                self.path.rename(aside)
            self.path.mkdir(exist_ok=True)
            (self.path / "failed.json").unlink(missing_ok=True)   # an earlier attempt's failure
            write_json_atomic(self.path / "config.json", self.config)
            (self.path / "history.jsonl").write_text("")  # an unfinished earlier attempt starts over
        except OSError as e:
            raise UserError(f"cannot write run folder {self.path}: {e.strerror or e}; "
                            "choose another with --out") from None

    def append(self, event: dict) -> None:
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(event, default=float) + "\n")

    def finish(self, summary: dict) -> None:
        write_json_atomic(self.summary_path, summary)
