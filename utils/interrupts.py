"""Stopping a command cleanly: Ctrl-C (SIGINT), SIGTERM and SIGHUP, for a program and the processes it starts.

A program's ``main`` runs under :func:`utils.errors.run_cli`, inside :func:`stop_on_signals`: each of the three
signals then raises an exception in the main thread (``KeyboardInterrupt`` for SIGINT,
:class:`Interrupted` for the other two), so that ``with`` blocks and ``finally`` clauses close files, DataLoader
workers are shut down and a temporary file being written is removed, before ``run_cli`` prints one line and exits
with 128 + the signal number (130, 143, 129). Files are only ever replaced whole (utils/checkpoint.py), so what was
written before stays intact and a training run continues with ``--Resume auto``.

A program that starts other commands runs them with :func:`run_child`, which hands its own interrupt on to the
child and waits for it to stop, so that no process of the command outlives it.
"""
import gc
import multiprocessing.resource_sharer
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE_SECONDS = 60  # a stopped child closes its files in well under a second; a hung one is then killed


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived (a BaseException, like KeyboardInterrupt: ``except Exception`` lets it pass)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_hooks_before_interrupt = []  # (sys.unraisablehook, sys.excepthook) while an interrupt is being handled


def _drop_report(*report):
    """Reports of errors an interrupt causes behind the scenes, which are noise after it, not the user's error:
    a constructor it lands in (a DataLoader iterator starting its workers) leaves a half-built object whose
    destructor fails ('Exception ignored ... Traceback'), and multiprocessing's thread that hands tensors to the
    DataLoader workers reports a worker that stopped mid-handover through ``sys.excepthook``."""


def _raise_interrupted(signum, frame):
    # One interrupt is enough: a Ctrl-C reaches the whole process group (a shell script that forwards it too sends
    # a second one), and a second exception raised inside the clean-up of the first would end it half-way.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    if not _hooks_before_interrupt:
        _hooks_before_interrupt.append((sys.unraisablehook, sys.excepthook))
        sys.unraisablehook = sys.excepthook = _drop_report
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


@contextmanager
def stop_on_signals():
    """Within the block, SIGINT, SIGTERM and SIGHUP raise (SIGINT too when the process was started in the
    background of a shell script, which starts it with SIGINT ignored); the previous handlers come back after it.
    Outside the main thread, where Python cannot set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def settle_after_interrupt():
    """Once an interrupt has been handled (its exception and frames released): collect what it left half-built,
    quietly, then let destructor errors be reported again."""
    gc.collect()
    multiprocessing.resource_sharer.stop(timeout=CHILD_GRACE_SECONDS)  # the hand-over thread, quietly
    report_errors_again()


def report_errors_again():
    """Let error reports through again after an interrupt (see :func:`settle_after_interrupt`) without its
    clean-up: for an error raised while the program was stopping, which is a defect to be seen, not noise."""
    if _hooks_before_interrupt:
        sys.unraisablehook, sys.excepthook = _hooks_before_interrupt.pop()


def quiet_handover_in_worker(worker_id):
    """``worker_init_fn`` of the DataLoaders: a worker hands each batch's tensors to the main process through
    multiprocessing's hand-over thread, which reports any failed hand-over with a traceback through
    ``sys.excepthook``. When the main process is interrupted in the middle of one, the worker reports the broken
    connection after the main process has printed its one line (seen once in CI, a SIGTERM during video
    training). In a worker such a report is never the user's news: a hand-over that fails while the main process
    runs on fails there too, with its own error. So reports from that thread are dropped; others pass."""
    report = sys.excepthook

    def drop_handover_reports(kind, error, trace):
        frames = traceback.extract_tb(trace)
        if not any(Path(frame.filename).name == 'resource_sharer.py' and 'multiprocessing' in frame.filename
                   for frame in frames):
            report(kind, error, trace)
    sys.excepthook = drop_handover_reports


def signal_number(stop):
    """The signal behind a ``KeyboardInterrupt`` or :class:`Interrupted`."""
    return signal.Signals(getattr(stop, 'signum', signal.SIGINT))


def run_child(command, while_waiting=None, every_seconds=2.0, stop_at=None, **popen_arguments):
    """``subprocess.run(command, **popen_arguments)`` without ``check``, returning the exit code, and calling
    ``while_waiting()`` every ``every_seconds`` while the child runs. ``stop_at`` (a ``time.monotonic()`` time):
    then the child gets SIGTERM, once, as if the user had stopped it, and is waited for (a training run keeps its
    finished epochs). If this process is interrupted meanwhile, the child gets the same signal (SIGTERM for a
    Ctrl-C, which may not reach a child started in another session), is waited for, and the interrupt goes on."""
    child = subprocess.Popen(command, **popen_arguments)
    try:
        while True:
            timeout = every_seconds if while_waiting else None
            if stop_at is not None:
                left = max(stop_at - time.monotonic(), 0.0)
                timeout = left if timeout is None else min(timeout, left)
            try:
                return child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if stop_at is not None and time.monotonic() >= stop_at:
                    child.send_signal(signal.SIGTERM)
                    stop_at = None
                elif while_waiting:
                    while_waiting()
    except (KeyboardInterrupt, Interrupted) as stop:
        child.send_signal(signal_number(stop) if isinstance(stop, Interrupted) else signal.SIGTERM)
        try:
            child.wait(timeout=CHILD_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
