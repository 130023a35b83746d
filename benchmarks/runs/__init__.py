"""One run end to end: its config and defaults (config.py, resolve.py, flags.py), the harness that runs it
(harness.py), its record on disk (records.py), tracking (tracking.py) and timing (timing.py).

From Python, `run` resolves a config exactly as `python -m benchmarks run` does (resolve.py), so the same
arguments give the same run, the same record and the same run id:

    from benchmarks.runs import run
    summary = run("tiny", dataset="mnist", seed=1, wandb="disabled")
"""

from benchmarks.runs.config import RunConfig, RunnerConfig


def run(method: str = "ours", dataset: str | None = None, *, arch: str | None = None,
        widths: str | tuple[int, ...] | None = None, seed: int = 0, options: dict | None = None,
        out: str = RunnerConfig.out, device: str = RunnerConfig.device, data_dir: str | None = None,
        download: bool = True, wandb: str = RunnerConfig.wandb, wandb_project: str = RunnerConfig.wandb_project,
        wandb_entity: str | None = None, force: bool = False, **train) -> dict:
    """Resolve (benchmarks.runs.resolve), run and record one configuration; returns its summary. `train`:
    TrainConfig fields (epochs, batch_size, lr, augment, train_subset, ...). A finished run in `out` is read
    back, not redone, unless `force`."""
    from benchmarks.runs.harness import run as run_config
    from benchmarks.runs.resolve import resolve

    config = resolve(method, dataset, arch, widths, seed, options, out, **train)
    runner = RunnerConfig(out=out, device=device, data_dir=data_dir, download=download, wandb=wandb,
                          wandb_project=wandb_project, wandb_entity=wandb_entity, force=force)
    return run_config(config, runner)[0]


__all__ = ["RunConfig", "RunnerConfig", "run"]
