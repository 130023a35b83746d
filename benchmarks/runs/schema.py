"""Every key of a run's summary.json: its unit and meaning. The README's results schema lists these keys
(tests/test_method_contract.py checks that every key a method writes is here, and the README has them all).

SCHEMA_VERSION counts changes of meaning or unit of these keys; every summary records the version it was
written under (summaries without the key predate it: version 1)."""

SCHEMA_VERSION = 2

COMMON = {   # every run
    "schema_version": ("–", "the version of this schema the summary was written under"),
    "run_id": ("–", "the run's folder name: method, dataset, arch, seed and a hash of config.json"),
    "status": ("–", "finished (a summary is written only by a run that finished)"),
    "method": ("–", "the method's registered name"),
    "dataset": ("–", "the dataset's name as given (npz:PATH for an npz file)"),
    "arch": ("–", "mlp, vgg or resnet18"),
    "seed": ("–", "the run's seed"),
    "start_widths": ("units", "growable widths at the start"),
    "widths": ("units", "growable widths at the end"),
    "params": ("parameters", "of the final network"),
    "params_nonzero": ("parameters", "non-zero parameters of the final network"),
    "macs": ("MACs / sample", "multiply-accumulates of one forward pass of one sample (convolutions and matrix "
                              "products, fvcore)"),
    "flops": ("FLOPs / sample", "2 x macs"),
    "train_flops": ("FLOPs", "training, summed step by step at that step's widths (3 x flops x batch), plus "
                             "growth_flops"),
    "growth_flops": ("FLOPs", "growth's own work: statistics passes and their products, line-search and "
                              "normalisation forwards"),
    "test_accuracy": ("fraction", "on the test set, after the last epoch"),
    "train_accuracy": ("fraction", "on train_eval_samples training samples (seeded), after the last epoch"),
    "val_accuracy": ("fraction", "on the validation split (--val-split: held out of the training set, seeded), "
                                 "after the last epoch; null without one"),
    "val_loss": ("nats / sample", "mean cross-entropy on the validation split; null without one"),
    "test_loss": ("nats / sample", "mean cross-entropy on the test set"),
    "train_loss": ("nats / sample", "mean cross-entropy on the same training samples as train_accuracy"),
    "epochs": ("epochs", "passes over the training set, growth and post-growth together"),
    "n_train": ("samples", "training samples (without the validation split)"),
    "n_val": ("samples", "validation samples held out of the training set (0: no --val-split)"),
    "wall_clock_s": ("s", "the run from data on the device to its last evaluation (device-synchronised)"),
    "cpu_s": ("s", "the process's CPU time over the same span, all threads"),
    "train_s": ("s", "of wall_clock_s: training steps"),
    "growth_s": ("s", "of wall_clock_s: growth steps"),
    "eval_s": ("s", "of wall_clock_s: evaluations"),
    "device": ("–", "the device's name (CPU model and threads, or GPU)"),
    "speed": ("–", "how the Trainer ran (not part of the run id): channels_last, compile, autocast_bf16, "
                   "cudnn_benchmark"),
    "torch_version": ("–", "torch.__version__"),
    "python": ("–", "the Python version"),
    "git_commit": ("–", "the code's commit when the run started (-dirty: with uncommitted changes outside results/)"),
}
GROWTH = {   # tiny, gradmax, random, and methods built on the growth schedule
    "target_widths": ("units", "the widths growth was asked to reach"),
    "reached_target": ("–", "whether every width reached its target"),
    "short_of_target": ("–", "pair -> why it ended below its target (empty when reached_target)"),
    "growth_steps": ("steps", "growth steps taken, the first before any training"),
    "growth_events": ("events", "proposals applied (one per pair and statistics pass that added units)"),
    "growth_epochs": ("epochs", "training epochs from the first to the last growth step"),
    "post_growth_epochs": ("epochs", "training epochs at the final widths, after the last growth step"),
    "stats_s": ("s", "of growth_s: statistics passes"),
    "solve_s": ("s", "of growth_s: the methods' proposals (TINY's solves and SVDs)"),
    "line_search_s": ("s", "of growth_s: line searches"),
}
BY_METHOD = {
    "gradmax": {"activation": ("–", "the network's activation (relu becomes relu1: slope 1 at 0)")},
    "random": {"variant": ("–", "zero_fan_out or both")},
    "fs": {"from_run": ("–", "the grown run whose final widths these are (null: widths given)")},
    "nas": {
        "trials": ("trials", "finished, pruned, failed (diverged) and interrupted (worker killed) trials of the study"),
        "search_train_flops": ("FLOPs", "the search: every trial's training steps and validation passes"),
        "search_wall_s": ("s", "of wall_clock_s: the search in this attempt (its training and evaluations are "
                               "in train_s and eval_s)"),
        "final_train_flops": ("FLOPs", "training the chosen widths on the whole training set"),
        "best_widths": ("units", "the widths of the trial with the best validation accuracy"),
        "best_val_accuracy": ("fraction", "that trial's validation accuracy"),
        "best_trial": ("–", "that trial's number in the study"),
        "budget_macs": ("MACs / sample", "the budget every trial kept within"),
    },
    "prune": {
        "target_sparsity": ("fraction", "the sparsity option"),
        "structured": ("–", "units removed (true) or single weights zeroed (false)"),
        "iterative_steps": ("steps", "pruning steps"),
        "finetune_epochs_total": ("epochs", "fine-tuning epochs over all steps"),
        "weight_sparsity": ("fraction", "zero weights among the prunable ones at the end"),
        "dense_widths": ("units", "widths of the dense network before pruning"),
        "effective_macs": ("MACs / sample", "MACs of the non-zero weights"),
    },
}


def keys(method: str, grows: bool) -> dict:
    """The keys a summary of `method` has (grows: it runs on the growth schedule)."""
    return COMMON | (GROWTH if grows else {}) | BY_METHOD.get(method, {})
