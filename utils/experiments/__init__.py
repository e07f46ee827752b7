"""The experiment programs, apart from the helpers they use (``utils/``):

* ``settings``: the paper's experiments as flag lists, the one table ``train.sh``, ``test.sh`` and the sweeps read
  (``python -m utils.experiments.settings NAME`` prints them for the shell);
* ``images`` and ``kdd``: the image (MNIST, CIFAR-10, image folders) and KDDCUP99 experiments, one file each, run
  by ``script_training.py`` and ``script_testing.py`` (through :func:`one_class_experiment`);
* ``ablation``: the paper's ablation study as one sweep (``python -m utils.experiments.ablation``);
* ``validation``: an image or KDDCUP99 experiment's learning rate, lambda and epochs chosen on validation data
  built from training data only;
* ``sensitivity``: validation runs that differ in one factor, compared in one table (docs/REPRODUCTION.md);
* ``paired``: the difference of two results paired by unit, with its interval;
* ``results_table``: the results tables of README.md and docs/REPRODUCTION.md, from the result files committed in
  ``memae_models/results/`` (and ``--collect``, which commits a finished run's);
* ``protocol_checks``: the KDDCUP99 and image protocol checks of docs/REPRODUCTION.md (ties, copies, overlap);
* ``oneclass_benchmark``: the image and KDD commands timed against a minimal loop (``utils.benchmark oneclass``).

The helpers they share live one level up, in ``utils/`` (``utils/one_class.py`` runs the units of an experiment).
"""
import importlib

# data family (data/registry.py) -> the program that runs its experiments
ONE_CLASS_PROGRAMS = {'image': 'utils.experiments.images', 'tabular': 'utils.experiments.kdd'}


def one_class_experiment(family):
    """The module whose ``run(opt, options, spec, device, train)`` runs an image or KDDCUP99 experiment (imported
    on demand: ``python -m utils.experiments.settings``, which the shell scripts call, must stay light)."""
    return importlib.import_module(ONE_CLASS_PROGRAMS[family])
