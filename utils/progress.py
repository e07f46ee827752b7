"""Progress of long runs: how long the epochs take and what is left, in words, and the progress file through
which a sweep (utils/experiments/ablation.py) follows the commands it runs.

A training run keeps an :class:`EpochClock`; after every epoch it prints the time left and, when the environment
variable ``MEMAE_PROGRESS_FILE`` names a file, replaces that file with one JSON object:
``{"unit", "units_done", "units", "epoch", "epochs", "seconds_left"}`` (``unit`` is the model being trained: a class
and run of an image experiment, a run of KDDCUP99, ``video`` for a video run).
"""
import json
import os
import time
from pathlib import Path

from utils.files import write_text

PROGRESS_ENV = 'MEMAE_PROGRESS_FILE'


def format_duration(seconds):
    """``1h05m``, ``4m07s``: a duration the way a person reads an estimate."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


def read_progress(path):
    """The progress object a command last wrote to ``path``, or None (none yet, or being replaced)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class EpochClock:
    """Times the epochs of a run of ``units`` units of ``epochs`` epochs each, and estimates the time left from
    the mean epoch time so far. A unit may train several models (lockstep candidates, each named apart, that share
    its epochs); what each has done is the latest epoch number it reported, so a model resumed at epoch 51 counts
    the 50 it did before it was interrupted."""

    def __init__(self, units, epochs):
        self.units, self.epochs = units, epochs
        self.reached = {}      # model -> the latest epoch (1-based) it ended
        self.skipped = set()   # units that had finished before (--Resume auto)
        self.seconds = []
        self.started = None
        self.path = os.environ.get(PROGRESS_ENV)

    @property
    def epochs_left(self):
        return max(self.units * self.epochs - sum(self.reached.values()) - len(self.skipped) * self.epochs, 0)

    def start_epoch(self):
        self.started = time.perf_counter()

    def end_epoch(self, unit, units_done, epoch):
        """Record the epoch (1-based ``epoch`` of ``unit``, the model trained) that just ended, which also starts
        the next one; returns its duration."""
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        self.seconds.append(seconds)
        self.reached[unit] = epoch
        if self.path:
            record = {'unit': unit, 'units_done': units_done, 'units': self.units, 'epoch': epoch,
                      'epochs': self.epochs, 'seconds_left': self.seconds_left}
            write_text(self.path, json.dumps(record))  # a reader never sees half a record
        return seconds

    def skip_unit(self, unit):
        """``unit`` had finished before (--Resume auto): its epochs are not left to do (said once or more)."""
        self.skipped.add(unit)

    @property
    def seconds_left(self):
        return self.epochs_left * sum(self.seconds) / len(self.seconds) if self.seconds else None

    def describe(self):
        """``1m02s per epoch, about 5m10s left`` after the latest epoch."""
        return f'{format_duration(self.seconds[-1])} per epoch, {self.time_left()}'

    def time_left(self):
        if self.epochs_left == 0:
            return 'done'
        return f'about {format_duration(self.seconds_left)} left' if self.seconds else 'time left not known yet'
