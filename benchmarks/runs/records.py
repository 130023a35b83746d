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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Record:
    run_id: str
    config: dict                 # config.json
    summary: dict | None         # summary.json: None until the run has finished
    error: str | None            # failed.json's error: the last attempt failed

    @property
    def status(self) -> str:
        return "finished" if self.summary else "failed" if self.error else "unfinished"


def read_records(runs: Path) -> list[Record]:
    """Every run folder under `runs` (folders kept aside by --force, `<id>.replaced-<time>`, are not runs)."""
    records = []
    for folder in sorted(Path(runs).glob("*/config.json")):
        path = folder.parent
        if ".replaced-" in path.name:
            continue
        summary = read_json(path / "summary.json") if (path / "summary.json").is_file() else None
        error = read_json(path / "failed.json")["error"] if (path / "failed.json").is_file() else None
        records.append(Record(path.name, read_json(folder), summary, error))
    return records


def source_run(out: str | Path, run_id: str) -> tuple[dict, dict]:
    """(config, summary) of the finished run `run_id` in the records folder `out`."""
    path = Path(out) / run_id
    if not (path / "summary.json").is_file():
        state = "unfinished (no summary.json)" if (path / "config.json").is_file() else "missing"
        raise UserError(f"--from-run: run '{run_id}' in {out} is {state}; give a finished run id "
                        f"(a folder of {out} with summary.json) or --widths")
    return read_json(path / "config.json"), read_json(path / "summary.json")
