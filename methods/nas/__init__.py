"""NAS baselines (`nas`): the best growable widths within a budget of inference MACs, found by random search
(Li & Talwalkar, UAI 2019) or TPE with Hyperband or successive-halving early stopping (Optuna), judged on a
validation split of the training set; the winner is then trained from scratch on the whole training set.

- space.py: what is searched (one width per MLP layer, one per convnet stage) and how every trial is kept
  within the budget;
- study.py: the Optuna study, in memory or in a journal file in the run folder that later attempts and
  several workers share (each asked trial runs once);
- search.py: one worker's trials, trained with the shared Trainer and logged as `trial` events;
- method.py: the registered method: search, then the final training, with the whole search counted.
"""
