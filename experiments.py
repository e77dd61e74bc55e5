"""experiments.py -- the one entry point: train a rule, draw a figure, run a study or a benchmark.

    python experiments.py --train sdnn --epochs 5        # the paper's network: per-epoch errors, JSON
    python experiments.py --train fa --lr 3e-4           # any rule of baselines.py (see --list)
    python experiments.py --train sdnn --resume          # continue an interrupted run from its checkpoint
    python experiments.py --fig 3 --quick                # a figure in seconds; --replot redraws saved data
    python experiments.py --study robustness --quick     # grid sweeps and Optuna for every rule, in minutes
    python experiments.py --fig 6 --scheduler tcp://HOST:8786   # the figure's runs on a Dask cluster
    python experiments.py --bench sdnn                   # speed
    python experiments.py --list                         # every rule, figure, study and benchmark

A rule's settings are the fields of its config (sdnn.Config, baselines.Config, KHConfig, EqPropConfig,
MicrocircuitConfig), set with --set KEY=VALUE; --lr and --batch are shorthands shared by the minibatch
rules. Every training run goes through fit(): one loop for every rule, which writes the run's JSON and a
checkpoint after every epoch. Models live in sdnn.py and baselines.py, data in datasets.py, figures in
figures.py, studies and benchmarks in studies.py, many runs at once (here or on a Dask cluster) in
executor.py; this file owns the command line, training and saving.
"""
import argparse
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

import baselines
import datasets
import sdnn
from figures import atomic_write

TRAINERS = {}   # rule -> fn(args, data, rng) -> Trainer: the command line's adapter for that rule


def register(table, *names):
    """Decorator: put a function in a registry under one or more names."""
    def add(fn):
        for name in names:
            table[name] = fn
        return fn
    return add


# ------------------------------------------------------------------------------------------------
# Saving: JSON and checkpoints, written atomically (a temporary file unique to this process, then a rename).

def save_json(obj, path):
    return atomic_write(path, lambda f: json.dump(obj, f, indent=1))


def writable(path, size=0):
    """Create path's folder and check that a file of `size` bytes can be written there, before any work
    is done (an empty file fits even on a full disk)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write(path + ".check", lambda f: f.write(bytes(size)), "wb")
        os.remove(path + ".check")
    except OSError as err:
        raise ValueError(f"cannot write {path}: {err.strerror}; choose another --json or --out") from None
    return path


def config_json(cfg):
    """A config dataclass as JSON-ready values (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


# ------------------------------------------------------------------------------------------------
# The training loop, shared by every rule.

class Split(NamedTuple):
    """Training, validation and test images (rows) and labels; n_out classes."""
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_out: int


class Diverged(Exception):
    """A NaN or infinite loss or weight: fit() flags the run and stops it."""


@dataclass
class Trainer:
    """What fit() needs from a rule. `model` holds everything an epoch changes (weights, optimizer and
    network state): fit() checkpoints it. The functions close over the rule's config, data and rng and
    take the model as their first argument, so that a resumed run can hand them the saved one."""
    model: dict
    epoch: Callable          # epoch(model, perm, index, bar) -> per-epoch numbers; "train_error" if online
    evaluate: Callable       # evaluate(model) -> {"train_error" (unless online), "val_error", "test_error"}
    header: str              # printed before training
    config: dict             # the rule's config, for the JSON
    hint: str = ""           # what to try when the run diverges
    pre_epochs: int = 0      # epochs of an unsupervised stage before the logged epochs (kh)
    pre_epoch: Callable = None    # pre_epoch(model, perm, index, bar) -> per-epoch numbers
    prepare: Callable = None      # prepare(model, stem): after the unsupervised stage, also on resume;
                                  # side files are named stem + suffix
    start: Callable = None        # start(model) -> dict for the result, once before the first epoch
    finish: Callable = None       # finish(model) -> dict for the result, once after the last epoch
    schedule: dict = None         # the run's schedule (sdnn's Schedule), for the JSON


CHECKPOINT_FORMAT = 1   # raise when what a checkpoint holds changes: restore() refuses other formats


def fit(trainer, n_train, epochs, rng, result, path, resume=False, quiet=False):
    """Train for `epochs` epochs, each on a fresh permutation of the n_train examples: log the train /
    val / test errors, write the JSON and a checkpoint (model, rng state, result) after every epoch.
    resume=True continues from the checkpoint at path + ".ckpt" to the result an uninterrupted run would
    have had, bit for bit. Ctrl-C or SIGTERM ends the run with the finished epochs saved."""
    ckpt, m = path + ".ckpt", trainer.model
    pre_done = 0
    if resume and os.path.exists(ckpt):
        result, pre_done = restore(ckpt, trainer, rng, result)
        print(f"resuming from {ckpt}: {pre_done} unsupervised and {result['epochs']} epochs done")
    elif resume:
        print(f"no checkpoint at {ckpt}: starting from the beginning")
    print(trainer.header, flush=True)
    if result["epochs"] < epochs:
        result["finished"] = False

    def save(pre):
        result["epochs_requested"] = epochs
        try:
            save_json(result, path)
            atomic_write(ckpt, lambda f: pickle.dump({"format": CHECKPOINT_FORMAT, "model": m, "result": result,
                                                       "rng": rng.bit_generator.state, "pre_epochs": pre}, f), "wb")
        except OSError as err:   # a full disk: stop with what was written (atomic: whole files or the old ones)
            raise ValueError(f"cannot write {err.filename or path} after epoch {result['epochs']}: {err.strerror}; "
                             f"{path} and its checkpoint hold the last epoch written (--resume continues)") from None
    with saved_on_interrupt(result, path):
        if trainer.start and pre_done == 0 and result["epochs"] == 0:
            start = time.perf_counter()
            result.update(trainer.start(m))
            result["start_seconds"] = time.perf_counter() - start
        for i in range(pre_done, trainer.pre_epochs):
            start, perm = time.perf_counter(), rng.permutation(n_train)
            with progress(n_train, f"unsupervised {i + 1}/{trainer.pre_epochs}", quiet) as bar:
                stats = trainer.pre_epoch(m, perm, i, bar)
            stats["pre_seconds_per_epoch"] = time.perf_counter() - start
            for key, value in stats.items():
                result.setdefault(key, []).append(value)
            print(f"unsupervised epoch {i + 1:3d}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)
            save(i + 1)
        if trainer.prepare:
            trainer.prepare(m, os.path.splitext(path)[0])
        for epoch in range(result["epochs"], epochs):
            start, perm = time.perf_counter(), rng.permutation(n_train)
            try:
                with progress(n_train, f"epoch {epoch + 1}/{epochs}", quiet) as bar:
                    stats = trainer.epoch(m, perm, epoch, bar)
                finite_or_raise(m)
            except Diverged as err:
                result["diverged"] = True
                print(f"diverged: {err} in epoch {epoch + 1}; {trainer.hint}", file=sys.stderr)
                break
            seconds = time.perf_counter() - start
            errors = trainer.evaluate(m)
            for key, value in stats.items():
                if key != "train_error":
                    result.setdefault(key, []).append(value)
            log_epoch(result, stats.get("train_error", errors.get("train_error")), errors["val_error"],
                      errors["test_error"], seconds, time.perf_counter() - start - seconds)
            if not result.get("stuck_at_chance") and stuck_at_chance(result):
                result["stuck_at_chance"] = True
                print(f"warning: the error has stayed near chance for {STUCK_EPOCHS} epochs; {trainer.hint}",
                      file=sys.stderr)
            save(trainer.pre_epochs)
        else:
            if not result.get("finished"):
                if trainer.finish:
                    start = time.perf_counter()
                    result.update(trainer.finish(m))
                    result["finish_seconds"] = time.perf_counter() - start
                result["finished"] = True
            save(trainer.pre_epochs)
    return result


STUCK_EPOCHS = 3   # epochs in a row near chance before a run is flagged


def stuck_at_chance(result):
    """True when the last STUCK_EPOCHS errors (validation, else test) are all >= 1 - 2 / classes (80 %
    for 10 classes, whose chance level is 90 %): a run that learns nothing, flagged in its JSON."""
    errors = result["val_error"] if result["val_error"] and result["val_error"][-1] is not None else result["test_error"]
    last = [e for e in errors[-STUCK_EPOCHS:] if e is not None]
    return len(last) == STUCK_EPOCHS and min(last) >= 1 - 2 / result.get("n_classes", 10)


def same_setting(saved, now):
    """True when a checkpoint's setting equals this run's. A setting the checkpoint lacks (an option added to
    the code after it was written) matches when it is off now (None, False, 0): new options default to off,
    so a run started before they existed resumes."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return all(same_setting(saved[k], now.get(k)) if k in saved else not now[k] for k in saved.keys() | now.keys())
    if saved is None:
        return not now
    return saved == now


RUN_KEYS = ("rule", "dataset", "hidden", "seed", "limit", "n_valid", "fold", "no_test", "n_train", "config", "schedule")


def other_settings(saved, result):
    """The settings (RUN_KEYS) in which a saved result is another run than `result`."""
    return [k for k in RUN_KEYS if not same_setting(saved.get(k), result.get(k))]


def check_overwrite(path, result, resume):
    """Refuse to write over a file at path that is not this run's (another run's result, or no result);
    note that this run starts again when it is this run's and there is no --resume."""
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
        other = other_settings(saved, json.loads(json.dumps(result))) if isinstance(saved, dict) else ["all"]
    except (OSError, ValueError):
        other = ["all: it is not a run's JSON"]
    if other:
        raise ValueError(f"{path} holds another run (other {', '.join(other)}); give another --json, or delete "
                         "the file to replace it")
    if not resume:
        print(f"note: {path} holds this run; starting it again from epoch 0 (--resume would continue it)",
              file=sys.stderr)


def restore(ckpt, trainer, rng, result):
    """Load a checkpoint into trainer.model and rng; refuse one of another run (other rule, data or config)."""
    with open(ckpt, "rb") as f:
        saved = pickle.load(f)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"--resume: {ckpt} was written by another version of this code (checkpoint format "
                         f"{saved.get('format')}, this code reads {CHECKPOINT_FORMAT}); start the run again")
    other = other_settings(saved["result"], result)
    if other:
        raise ValueError(f"--resume: {ckpt} is a run with other settings ({', '.join(other)}); "
                         f"give the same settings, or another --json for a new run")
    trainer.model.update(saved["model"])
    rng.bit_generator.state = saved["rng"]
    return saved["result"], saved["pre_epochs"]


def finite_or_raise(model):
    """Raise Diverged if any float array in the model (nested dicts, lists, dataclasses) is not finite."""
    stack = [model]
    while stack:
        obj = stack.pop()
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind == "f" and not np.isfinite(obj).all():
                raise Diverged(f"weights or state not finite (an array of shape {obj.shape})")
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(vars(obj).values())


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (kill) raises KeyboardInterrupt, as Ctrl-C does; outside the main thread it is left alone."""
    def term(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, term)
    except ValueError:           # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def saved_on_interrupt(result, path):
    """Ctrl-C or SIGTERM ends the epochs; the result of the finished epochs is written to path."""
    with sigterm_as_interrupt():
        try:
            yield
        except KeyboardInterrupt:
            result["interrupted"] = True
            save_json(result, path)
            print(f"interrupted after {result['epochs']} epochs; saved them to {path} (--resume continues)",
                  file=sys.stderr)


def progress(total, desc, quiet):
    """A progress bar on a terminal; nothing in a redirected log (the epoch lines say enough there)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, disable=quiet or not sys.stderr.isatty())


def log_epoch(result, train_err, val_err, test_err, seconds, eval_seconds):
    """Append one epoch's errors to the result and print them on one line."""
    result["epochs"] += 1
    for key, value in (("train_error", train_err), ("val_error", val_err), ("test_error", test_err),
                       ("seconds_per_epoch", seconds), ("eval_seconds_per_epoch", eval_seconds)):
        result[key].append(None if value is None else float(value))
    pct = lambda e: "  -  " if e is None else f"{100 * e:5.2f}%"
    print(f"epoch {result['epochs']:3d}  train {pct(train_err)}  val {pct(val_err)}  test {pct(test_err)}  "
          f"{seconds:6.1f} s (+{eval_seconds:.1f} s testing)", flush=True)


def summarize(result):
    """Early stopping on the validation split: the epoch with the lowest val error and its test error."""
    val = [v for v in result["val_error"] if v is not None]
    if len(val) == len(result["val_error"]) and val:
        best = int(np.argmin(val))
        test = result["test_error"][best]
        result.update(best_val_epoch=best + 1, test_error_at_best_val=test)
        print(f"lowest val error {100 * val[best]:.2f}% at epoch {best + 1}"
              + ("" if test is None else f": test error {100 * test:.2f}% there"))
    return result


def error_rate(pred, y):
    return None if len(y) == 0 else float(np.mean(pred != y))


def split_errors(predict, data, train=True):
    """Error rates of predict(X) on the training (if train), validation and test images, in that order."""
    out = {"train_error": error_rate(predict(data.x), data.y)} if train else {}
    out.update(val_error=error_rate(predict(data.x_val), data.y_val),
               test_error=error_rate(predict(data.x_test), data.y_test))
    return out


def describe(name, sizes, data, details):
    return (f"{name} {'-'.join(map(str, sizes))}: {len(data.x)} train, {len(data.x_val)} val, "
            f"{len(data.x_test)} test; {details}")


# ------------------------------------------------------------------------------------------------
# Trainers: a rule's config and data in, a Trainer out.

def minibatch_trainer(rule, cfg, data, rng):
    """BP, FA, DFA, sign symmetry and the target-propagation rules of baselines.py: minibatch steps."""
    params, opt = baselines.make(rule, cfg, rng)
    t = baselines.one_hot(data.y, data.n_out, cfg.dtype)

    def epoch(m, perm, index, bar):
        for i in range(0, len(perm), cfg.batch):
            idx = perm[i:i + cfg.batch]
            L = baselines.step(rule, m["params"], m["opt"], data.x[idx], t[idx], cfg)
            if not np.isfinite(L):
                raise Diverged(f"loss {L}")
            bar.update(len(idx))
        return {}

    def evaluate(m):
        return split_errors(lambda X: baselines.predict(baselines.averaged(m["params"], m["opt"]), X, cfg), data)
    return Trainer({"params": params, "opt": opt}, epoch, evaluate, config=config_json(cfg),
                   header=describe(rule, cfg.sizes, data, f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch}"),
                   hint=f"try a smaller --lr (now {cfg.lr:g})")


@dataclass(frozen=True)
class Schedule:
    """Choices of an sdnn training run that are not the paper's model; the defaults are the paper's
    (constant rates, the weights that learn are the ones tested, the code's initial weights)."""
    eta_decay: float = 1.0        # factor on the rates after each epoch
    eta_schedule: str = "step"    # "step": etas * eta_decay**epoch; "linear": falling to 0 over the run
    avg_halflife: float = 0.0     # examples; > 0: test a running (Polyak) average of W and b instead of W
    init_gain: float = 1.0        # factor on the initial W and Y (0.51 gives the exact kernel the code's drive)

    def __post_init__(self):
        if not 0 < self.eta_decay <= 1:
            raise ValueError(f"eta_decay={self.eta_decay}: must be in (0, 1], the factor on the rates per epoch")
        if self.eta_schedule not in ("step", "linear"):
            raise ValueError(f"eta_schedule={self.eta_schedule!r}: must be 'step' or 'linear'")
        if self.eta_schedule == "linear" and self.eta_decay != 1:
            raise ValueError("eta_decay must be 1 with eta_schedule=linear (the linear rates fall to 0 by themselves)")
        if self.avg_halflife < 0 or self.init_gain < 0:
            raise ValueError("avg_halflife and init_gain must be >= 0")


def block_size(cfg):
    """Examples between updates of a linear rate schedule and of the weight average: one kernel call of
    the rate mode (1,000 examples), 500 examples in spiking mode."""
    return 1000 if not cfg.spiking and not cfg.symmetric_feedback else 500


def copy_weights(net):
    """A Network with copies of net's W and b (the start of a running average); Y is shared."""
    return sdnn.Network([w.copy(order="F") for w in net.W], [v.copy() for v in net.b], net.Y, net.Y_mask)


def polyak(avg, net, n, halflife):
    """Move the running average towards net's W and b after n more examples: avg <- d avg + (1 - d) net,
    d = 2**(-n / halflife) (Polyak-Ruppert averaging, for testing only: learning uses net)."""
    d = 0.5 ** (n / halflife)
    for a, w in zip(avg.W + avg.b, net.W + net.b):
        a *= d
        a += (1 - d) * w


def sdnn_epoch(m, X, y, cfg, sched, rng, epoch, run_examples, bar=None):
    """One epoch of online training of the segregated-dendrite network on X, y in order, in blocks: each
    block learns at the rates of the schedule at its middle example and then updates the average."""
    etas = tuple(eta * sched.eta_decay ** epoch for eta in cfg.etas)
    block, parts = block_size(cfg), []
    for a in range(0, len(X), block):
        n = min(block, len(X) - a)
        if sched.eta_schedule == "linear":
            middle = epoch * len(X) + a + n / 2
            etas_now = tuple(eta * (1 - middle / run_examples) for eta in etas)
        else:
            etas_now = etas
        parts.append(sdnn.train_epoch(m["net"], m["state"], X[a:a + n], y[a:a + n], replace(cfg, etas=etas_now),
                                      rng, progress=bar.update if bar else None))
        if m["avg"] is not None:
            polyak(m["avg"], m["net"], n, sched.avg_halflife)
    return {key: np.concatenate([p[key] for p in parts]) for key in ("L0", "L1", "correct", "angle")}


def sdnn_trainer(cfg, sched, data, rng, epochs, retests=0, name="sdnn", diagnose=False, quiet=False):
    """The segregated-dendrite network (sdnn.py), one example at a time. train_error is the online error
    of the forward phases during the epoch (the code's record_training_error): a spiking test of all
    training images would cost more than the epoch. The first 10 epochs also record the backprop angle
    in blocks of 100 examples (Fig 7A). diagnose=True: after every epoch, L0 and L1 of every test image
    without updates and their correlation per class (Fig 5B, C). Every spiking test shows a progress
    bar on a terminal (unless quiet): testing is most of an epoch's time."""
    net = sdnn.init_weights(data.x.shape[1], cfg, rng, gain=sched.init_gain)
    model = {"net": net, "state": sdnn.init_state(net), "avg": copy_weights(net) if sched.avg_halflife else None}
    n_jobs = int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))   # threads of the spiking tests

    def test(m, X, y, what="test"):   # the average (if any) is what is tested; fresh spikes from rng every time
        with progress(len(X), f"testing {len(X)} {what} images", quiet) as bar:
            return error_rate(sdnn.predict(m["avg"] or m["net"], X, cfg, rng, n_jobs=n_jobs,
                                           progress=None if bar.disable else bar.update), y)

    def epoch(m, perm, index, bar):
        r = sdnn_epoch(m, data.x[perm], data.y[perm], cfg, sched, rng, index, epochs * len(data.x), bar)
        angle = r["angle"]
        out = {"train_error": 1.0 - float(np.mean(r["correct"])), "mean_L0": float(np.mean(r["L0"])),
               "mean_L1": float(np.mean(r["L1"])),
               "mean_angle_deg": float(np.nanmean(angle)) if np.isfinite(angle).any() else None}
        if index < 10 and np.isfinite(angle).any():     # Fig 7A: 10 epochs, a window of 100 examples
            out["angle_per_100"] = [round(float(a), 3) for a in block_means(angle, 100)]
        if diagnose:      # its own spikes, so that the training run is the same with or without it
            spikes = np.random.default_rng([rng.bit_generator.seed_seq.entropy, 5, index])
            out.update(l_diagnostics(m["net"], data.x_test, data.y_test, cfg, spikes, keep=index < 2))
        return out

    def start(m):             # the paper tests once before training
        if not len(data.y_test):                          # --no-test
            return {}
        err = test(m, data.x_test, data.y_test)
        print(f"initial test error {100 * err:.2f}%")
        return {"initial_test_error": err}

    def finish(m):            # Fig 6B: the spread of re-tests of the final network, fresh spikes each time
        if not retests:
            return {}
        errs = [test(m, data.x_test, data.y_test) for _ in range(retests)]
        sd = float(np.std(errs, ddof=1)) if len(errs) > 1 else 0.0
        print(f"{retests} re-tests of the final network: test error {100 * np.mean(errs):.2f}% (SD {100 * sd:.2f})")
        return {"test_retests": errs, "test_retest_mean": float(np.mean(errs)), "test_retest_sd": sd}

    mode = "spiking" if cfg.spiking else "RATE MODE (not the paper's model)"
    return Trainer(model, epoch, lambda m: {"val_error": test(m, data.x_val, data.y_val, "validation"),
                                            "test_error": test(m, data.x_test, data.y_test)},
                   header=describe(name, (data.x.shape[1], *cfg.hidden, cfg.n_out), data, f"{mode}; etas {cfg.etas}"),
                   config=dict(config_json(cfg), k_b=cfg.k_b, k_d=cfg.k_d, P0=cfg.P0, P1=cfg.P1),
                   hint="try smaller --set etas=...", start=start, finish=finish)


def block_means(a, n):
    """Means of consecutive blocks of n entries of a, NaNs left out (the last block may be shorter)."""
    blocks = (a[i:i + n] for i in range(0, len(a), n))
    return np.array([np.nanmean(b) if np.isfinite(b).any() else np.nan for b in blocks])


def l_diagnostics(net, X, y, cfg, rng, keep=False):
    """Fig 5B, C: forward and target phases on every image of X without updates (a state of their own,
    carried over as in training). Per class, Pearson's r between L0 (first hidden layer) and L1 (output),
    and r after shuffling L1 within the class; keep=True also returns the L0, L1 pairs of the '2's."""
    state = sdnn.init_state(net)
    L = np.array([[info["L0"], info["L1"]] for info in
                  (sdnn.train_example(net, state, x, label, cfg, rng, update=False) for x, label in zip(X, y))])
    r, r_shuffled = [], []
    for c in range(int(y.max()) + 1):
        L0, L1 = L[y == c, 0], L[y == c, 1]
        r.append(float(np.corrcoef(L0, L1)[0, 1]))
        r_shuffled.append(float(np.corrcoef(L0, rng.permutation(L1))[0, 1]))
    out = {"r_L0_L1": r, "r_L0_L1_shuffled": r_shuffled}
    if keep:
        out["L0_L1_twos"] = L[y == 2].round(6).tolist()
    return out


def kh_trainer(cfg, data, rng, epochs, synapses=None, save_synapses=False):
    """Krotov-Hopfield: the hidden synapses W learn without labels for cfg.epochs_unsup epochs, then the
    top layer S learns for `epochs` epochs with Adam (the logged epochs). synapses: start from this W."""
    x, x_val, x_test = (a.astype(cfg.dtype) for a in (data.x, data.x_val, data.x_test))
    W = baselines.kh_init(x.shape[1], cfg, rng)
    if synapses is not None:
        W = synapses.astype(cfg.dtype)
    S = baselines.kh_top_init(data.n_out, cfg)
    top = {"W": [S], "b": []}
    model = {"W": W, "top": top, "opt": baselines.init_optimizer(top)}
    t = 2 * baselines.one_hot(data.y, data.n_out, cfg.dtype) - 1             # targets in {-1, +1}
    h = {}                                                                  # hidden features, not saved

    def pre_epoch(m, perm, index, bar):
        eps, norm = baselines.kh_epoch(m["W"], x, perm, index, cfg, bar.update)
        return {"eps": eps, "unsup_median_row_norm": norm}

    def prepare(m, stem):
        if save_synapses:        # beside the run's JSON: --synapses starts a run from them
            np.savez_compressed(stem + ".npz", W=m["W"])
        h.update(zip(("train", "val", "test"), (baselines.kh_hidden(m["W"], a, cfg) for a in (x, x_val, x_test))))

    def epoch(m, perm, index, bar):
        adam = baselines.Config(sizes=(cfg.n_hidden, data.n_out),
                                lr=cfg.lr * (1 - index / epochs) if cfg.anneal_top else cfg.lr)
        for i in range(0, len(perm), cfg.batch):
            idx = perm[i:i + cfg.batch]
            C, dS = baselines.kh_top_loss(m["top"]["W"][0], h["train"][idx], t[idx], cfg)
            if not np.isfinite(C):
                raise Diverged(f"top-layer loss {C}")
            baselines.update(m["top"], {"W": [dS], "b": []}, m["opt"], adam)
            bar.update(len(idx))
        return {}

    def evaluate(m):
        S = m["top"]["W"][0]
        return {f"{k}_error": error_rate(baselines.kh_predict(S, h[k]), lab)
                for k, lab in (("train", data.y), ("val", data.y_val), ("test", data.y_test))}
    details = (f"p {cfg.p:g}, k {cfg.k}, Delta {cfg.Delta:g}, eps0 {cfg.eps0:g} over {cfg.epochs_unsup} "
               f"unsupervised epochs; top layer n {cfg.n:g}, beta {cfg.beta:g}, m {cfg.m}, Adam lr {cfg.lr:g}")
    return Trainer(model, epoch, evaluate, describe("kh", (x.shape[1], cfg.n_hidden, data.n_out), data, details),
                   config_json(cfg), hint=f"try a smaller --lr (now {cfg.lr:g})", pre_epochs=cfg.epochs_unsup,
                   pre_epoch=pre_epoch, prepare=prepare)


def eqprop_trainer(cfg, data, rng):
    """Equilibrium propagation with persistent particles: each training example keeps its free-phase
    state from one epoch to the next. train_error is the online error of those free phases during the
    epoch (as the reference code); val and test start from s = 0 and relax for n_free_eval iterations."""
    params = baselines.eqprop_init(cfg, rng)
    model = {"params": params, "particles": baselines.eqprop_zero_state(params, len(data.x), cfg.dtype)}
    d = baselines.one_hot(data.y, data.n_out, cfg.dtype)

    def epoch(m, perm, index, bar):
        wrong = 0
        for i in range(0, len(perm), cfg.batch):
            idx = perm[i:i + cfg.batch]
            s_free, C = baselines.eqprop_step(m["params"], data.x[idx], d[idx], [p[idx] for p in m["particles"]],
                                              cfg, rng)
            if not np.isfinite(C):
                raise Diverged(f"cost {C}")
            for p, s in zip(m["particles"], s_free):
                p[idx] = s                                                   # persistent particles
            wrong += int(np.sum(s_free[-1].argmax(axis=1) != data.y[idx]))
            bar.update(len(idx))
        return {"train_error": wrong / len(perm)}
    details = (f"{cfg.n_free} free / {cfg.n_clamped} clamped iterations, epsilon {cfg.epsilon:g}, beta "
               f"{cfg.beta:g}{' (random sign)' if cfg.random_sign else ''}, alphas {cfg.alphas}")
    return Trainer(model, epoch, lambda m: split_errors(lambda X: baselines.eqprop_predict(m["params"], X, cfg),
                                                        data, train=False),
                   describe("eqprop", cfg.sizes, data, details), config_json(cfg), hint="try smaller --set alphas=...")


def microcircuit_trainer(cfg, data, rng):
    """Dendritic cortical microcircuit, steady-state version (Sacramento et al. 2018, section 3.4), from
    the self-predicting state."""
    params = baselines.microcircuit_init(cfg, rng)
    u_trgt, r_trgt = baselines.microcircuit_targets(data.y, data.n_out, cfg)

    def epoch(m, perm, index, bar):
        for i in range(0, len(perm), cfg.batch):
            idx = perm[i:i + cfg.batch]
            L = baselines.microcircuit_step(m["params"], data.x[idx], u_trgt[idx], r_trgt[idx], cfg)
            if not np.isfinite(L):
                raise Diverged(f"loss {L}")
            bar.update(len(idx))
        return {}
    details = (f"etas {cfg.etas}, t_half {cfg.t_half}, B_gain {cfg.B_gain}, batch {cfg.batch}, lambda_out "
               f"{cfg.lambda_out:.3f}, lambda_I {cfg.lambda_I:.3f}, lambda_A {cfg.lambda_A:.3f}")
    return Trainer({"params": params}, epoch,
                   lambda m: split_errors(lambda X: baselines.microcircuit_predict(m["params"], X, cfg), data),
                   describe("microcircuit", cfg.sizes, data, details), config_json(cfg),
                   hint="try a smaller --lr or --set etas=...")


# ------------------------------------------------------------------------------------------------
# The command line's adapters: args -> the rule's config -> its trainer.

def rule_config(cls, items, **given):
    """cls(**given), then every KEY=VALUE of --set, each VALUE read as the type of the field's default
    (tuples comma-separated: --set alphas=0.1,0.05); inf and nan are refused."""
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        if key in ("sizes", "hidden", "n_hidden", "n_out"):
            raise ValueError(f"--set {item}: the layer sizes come from --hidden and the dataset "
                             f"(e.g. --hidden 500 100; --hidden alone: no hidden layer)")
        default = fields[key]
        try:
            if isinstance(default, tuple):
                given[key] = tuple(type(default[0])(v) for v in text.split(","))
            elif isinstance(default, bool):
                given[key] = {"true": True, "1": True, "false": False, "0": False}[text.lower()]
            else:
                given[key] = type(default)(text)
        except (ValueError, KeyError):
            raise ValueError(f"--set {item}: {key} takes a {type(default).__name__} like {default!r}") from None
        values = given[key] if isinstance(given[key], tuple) else (given[key],)
        if any(isinstance(v, float) and not np.isfinite(v) for v in values):
            raise ValueError(f"--set {item}: {key} must be finite (inf and nan would only end the run as diverged)")
    return cls(**given)


def shorthands(args, lr="lr", batch="batch", instead=""):
    """--lr and --batch as config fields (None: the rule has no such field, use `instead`); an error if
    --set sets them too."""
    given = {}
    for flag, name in (("lr", lr), ("batch", batch)):
        value = getattr(args, flag)
        if value is None:
            continue
        if name is None:
            raise ValueError(f"--{flag}: {args.train} has no single {flag}; {instead or 'use --set with its fields'}")
        if any(item.partition("=")[0] == name for item in args.set or []):
            raise ValueError(f"--{flag} and --set {name}=...: give one of them")
        given[name] = value
    return given


def load_split(args):
    """--dataset with --n-valid validation images, or with --fold I/K the I-th of K equal blocks of the
    whole training set (k-fold cross-validation without shuffling); --no-test leaves the test set out;
    --limit keeps the first N training images; --quick keeps 2,000 training and 300 validation and test images."""
    data = datasets.load(args.dataset, data_dir=args.data_dir, n_valid=0 if args.fold else args.n_valid)
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    if args.fold:
        i, k = args.fold
        a, b = (i - 1) * len(x) // k, i * len(x) // k
        x, y, x_val, y_val = np.concatenate([x[:a], x[b:]]), np.concatenate([y[:a], y[b:]]), x[a:b], y[a:b]
    if args.no_test:
        x_test, y_test = x_test[:0], y_test[:0]
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    if args.quick:
        x, y, x_val, y_val, x_test, y_test = x[:2000], y[:2000], x_val[:300], y_val[:300], x_test[:300], y_test[:300]
    return Split(x, y, x_val, y_val, x_test, y_test, int(max(y.max(), y_test.max(initial=0))) + 1)


@register(TRAINERS, *baselines.RULES)
def cli_minibatch(args, data, rng):
    given = shorthands(args)
    items = dict(item.partition("=")[::2] for item in args.set or [])
    if items.get("loss") == "mse" and "output" not in items:
        given["output"] = "sigmoid"
    cfg = rule_config(baselines.Config, args.set, sizes=(data.x.shape[1], *args.hidden, data.n_out), **given)
    if baselines.RULES[args.train].extra_update is not None and "phase_steps" not in items:
        cfg = replace(cfg, phase_steps=-(-len(data.x) // cfg.batch))   # alternating: one phase = one epoch
    return minibatch_trainer(args.train, cfg, data, rng)


def sdnn_settings(args, n_out=10):
    """sdnn.Config of --preset for --hidden (the paper's rates for that network) and the run's Schedule,
    both with --set KEY=VALUE (a field of either)."""
    if args.preset not in sdnn.PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}: choose from {sorted(sdnn.PRESETS)}")
    shorthands(args, lr=None, batch=None, instead="it learns online with one rate per layer: --set etas=0.21,0.21")
    names = {f.name for f in dataclasses.fields(Schedule)}
    items = args.set or []
    run_items = [i for i in items if i.partition("=")[0] in names]
    given = dataclasses.asdict(sdnn.PRESETS[args.preset])
    given.update(hidden=tuple(args.hidden), n_out=n_out)
    if tuple(args.hidden) in sdnn.PAPER_ETAS:
        given["etas"] = sdnn.PAPER_ETAS[tuple(args.hidden)]
    elif not any(i.startswith("etas=") for i in items):
        raise ValueError(f"no paper learning rates for --hidden {' '.join(map(str, args.hidden))}: "
                         f"give {len(args.hidden) + 1} with --set etas=...")
    cfg = rule_config(sdnn.Config, [i for i in items if i not in run_items], **given)
    return cfg, rule_config(Schedule, run_items)


@register(TRAINERS, "sdnn")
def cli_sdnn(args, data, rng):
    cfg, sched = sdnn_settings(args, data.n_out)
    trainer = sdnn_trainer(cfg, sched, data, rng, args.epochs, args.retests, name=f"sdnn ({args.preset})",
                           diagnose=args.diagnose, quiet=args.quiet)
    trainer.schedule = config_json(sched)
    if sched.eta_schedule == "linear":      # the rates depend on the run's length: resume only the same run
        trainer.schedule["run_examples"] = args.epochs * len(data.x)
    return trainer


@register(TRAINERS, "kh")
def cli_kh(args, data, rng):
    if len(args.hidden) != 1:
        raise ValueError(f"--hidden {' '.join(map(str, args.hidden))}: kh has one hidden layer "
                         "(the paper's MNIST network: --hidden 2000)")
    cfg = rule_config(baselines.KHConfig, args.set, n_hidden=args.hidden[0], **shorthands(args))
    synapses = None
    if args.synapses:                                  # continue from saved synapses (a kh .npz)
        synapses = np.load(args.synapses)["W"]
        if synapses.shape != (cfg.n_hidden, data.x.shape[1]):
            raise ValueError(f"--synapses {args.synapses}: W has shape {synapses.shape}, the network needs "
                             f"{(cfg.n_hidden, data.x.shape[1])} (--hidden {synapses.shape[0]}?)")
    return kh_trainer(cfg, data, rng, args.epochs, synapses, save_synapses=True)


@register(TRAINERS, "eqprop")
def cli_eqprop(args, data, rng):
    given = dict(sizes=(data.x.shape[1], *args.hidden, data.n_out),
                 **baselines.EQPROP_TABLE2.get(tuple(args.hidden), {}))
    given.update(shorthands(args, lr=None, instead="one rate per layer: --set alphas=0.1,0.05"))
    return eqprop_trainer(rule_config(baselines.EqPropConfig, args.set, **given), data, rng)


@register(TRAINERS, "microcircuit")
def cli_microcircuit(args, data, rng):
    given = baselines.microcircuit_defaults((data.x.shape[1], *args.hidden, data.n_out))   # rates for the depth
    given.update(shorthands(args, lr="etas"))
    if args.lr is not None:                           # --lr: one rate for every bottom-up layer
        given["etas"] = (args.lr,) * (len(args.hidden) + 1)
    return microcircuit_trainer(rule_config(baselines.MicrocircuitConfig, args.set, **given), data, rng)


CONFIG_CLASSES = {"sdnn": sdnn.Config, "kh": baselines.KHConfig, "eqprop": baselines.EqPropConfig,
                  "microcircuit": baselines.MicrocircuitConfig}


def run_name(result):
    """<rule>_<dataset>_<hash>_s<seed>: the hash covers what makes the run (data, config, schedule) and
    leaves out config fields at their defaults, so that a field added to a config later keeps old names.
    The epochs are left out (a longer run continues a shorter one) unless the final network is re-tested."""
    cls = CONFIG_CLASSES.get(result["rule"], baselines.Config)
    defaults = {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in dataclasses.fields(cls)}
    key = {k: result[k] for k in ("rule", "dataset", "n_train", "n_valid", "limit", "quick")}
    key.update({k: result[k] for k in ("fold", "no_test") if result.get(k)})     # only when given: old names stay
    if result.get("retests"):
        key.update(retests=result["retests"], epochs=result["epochs_requested"])
    if result.get("dynamics_recorded"):       # only when given: runs without it keep their names
        key["dynamics"] = True
    key["config"] = {k: v for k, v in result["config"].items() if k not in defaults or v != defaults[k]}
    key["schedule"] = {k: v for k, v in (result["schedule"] or {}).items() if getattr(Schedule, k, None) != v}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{result['rule']}_{result['dataset']}_{digest}_s{result['seed']}"


def lock_holder(path):
    """The process id of a live process that is training the run of `path` (its .lock file), else None."""
    try:
        with open(path + ".lock") as f:
            pid = int(f.read())
        os.kill(pid, 0)                   # signal 0: does the process exist?
        return pid
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(path):
    """Hold path + ".lock" (this process's id) while training: a second process never trains the same run."""
    lock = path + ".lock"
    if (pid := lock_holder(path)) and pid != os.getpid():
        raise ValueError(f"{path} is being trained by process {pid}; wait for it, or stop it (--resume continues)")
    try:
        with open(lock, "w") as f:     # (on a full disk this fails: the empty lock goes too)
            f.write(str(os.getpid()))
        yield
    finally:
        if os.path.exists(lock):
            os.remove(lock)


def versions():
    """The code's commit (when in a git checkout) and the versions of the packages a result depends on."""
    import numba
    import scipy
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "uncommitted_changes": dirty, "python": sys.version.split()[0],
            "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__}


def train(args):
    """--train RULE: build the rule's trainer from the command line and fit it; returns the result. The
    JSON goes to --json, or to --out/<run_name>.json: one file per run."""
    if args.train not in TRAINERS:
        fail(f"unknown rule {args.train!r}; valid rules: {' '.join(sorted(TRAINERS))}")
    if args.json:
        writable(args.json)
    data = load_split(args)
    rng = np.random.default_rng(args.seed)
    trainer = TRAINERS[args.train](args, data, rng)
    if args.dynamics:             # measures between blocks of epoch 1 and after every epoch (studies.py)
        import studies
        trainer = studies.with_dynamics(args.train, trainer, data, args.seed, **(dict(blocks=4, n_probe=100)
                                                                                  if args.quick else {}))
    result = dict(run_identity(args, data, trainer), hidden=list(args.hidden), n_val=len(data.x_val),
                  n_test=len(data.x_test), n_classes=data.n_out, command=args.argv, versions=versions(), epochs=0,
                  train_error=[], val_error=[], test_error=[], seconds_per_epoch=[], eval_seconds_per_epoch=[],
                  diverged=False)
    if args.train == "sdnn":
        result["preset"] = args.preset
    # room for the checkpoint (what it pickles now, twice: the new file is written before the old goes)
    path = writable(args.json or os.path.join(args.out, run_name(result) + ".json"),
                    size=2 * len(pickle.dumps(trainer.model)))
    # one BLAS thread unless OMP_NUM_THREADS says otherwise: with the other core busy, BLAS threads wait
    # on each other (bp 7x, Krotov-Hopfield 20-30x slower per epoch); runs go in parallel instead (run_all)
    from threadpoolctl import threadpool_limits
    threads = threadpool_limits(1) if "OMP_NUM_THREADS" not in os.environ else contextlib.nullcontext()
    check_overwrite(path, result, args.resume)
    with run_lock(path), threads:
        result = summarize(fit(trainer, len(data.x), args.epochs, rng, result, path, args.resume, args.quiet))
        print(f"wrote {save_json(result, path)}")
    return result


def run_path(argv):
    """The JSON that `python experiments.py ARGV` (a --train command) writes, found without training."""
    args = parse(argv)
    if args.json:
        return args.json
    data = cached_split(*(getattr(args, k) for k in SPLIT_ARGS))
    trainer = TRAINERS[args.train](args, data, np.random.default_rng(args.seed))
    return os.path.join(args.out, run_name(run_identity(args, data, trainer)) + ".json")


def run_identity(args, data, trainer):
    """What makes a --train run the run it is (what run_name hashes and a resume must match): the start of
    its JSON, for train() and run_path() alike."""
    out = {"rule": args.train, "dataset": args.dataset, "seed": args.seed, "limit": args.limit,
           "n_valid": args.n_valid, "fold": args.fold, "no_test": args.no_test, "n_train": len(data.x),
           "quick": args.quick, "retests": args.retests, "epochs_requested": args.epochs,
           "config": trainer.config, "schedule": trainer.schedule}
    if args.dynamics:
        out["dynamics_recorded"] = True
    return out


SPLIT_ARGS = ("dataset", "data_dir", "n_valid", "fold", "no_test", "limit", "quick")   # what load_split reads


@functools.lru_cache(maxsize=1)      # run_all names many runs on one dataset: load it once
def cached_split(*values):
    return load_split(argparse.Namespace(**dict(zip(SPLIT_ARGS, values))))


def finished_run(argv, path):
    """The result at path if that run needs no more work (finished, at least ARGV's --epochs), else None."""
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if result.get("finished") and result["epochs"] >= parse(argv).epochs else None


# Training time per example relative to BP's, on 784-500-10 (reference/complexity.json, one core): only to
# start the longest runs first, so that the short ones fill the end and no core idles beside the last.
RELATIVE_COST = {"sdnn": 25.0, "sdnn:rate": 2.0, "eqprop": 7.0, "microcircuit": 4.0, "aosdtp": 2.7}
INPUTS = {"cifar10": 3072, "digits": 64}         # inputs per image; MNIST and Fashion-MNIST 784


def run_cost(argv):
    """A rough cost of a --train command: relative cost per example x synapses x epochs (with KH's
    unsupervised ones)."""
    value = lambda flag, default: argv[argv.index(flag) + 1] if flag in argv else default
    rule, preset = argv[1], value("--preset", "paper")
    i = argv.index("--hidden") + 1 if "--hidden" in argv else len(argv)
    hidden = [int(a) for a in itertools.takewhile(str.isdigit, argv[i:])]
    sizes = [INPUTS.get(value("--dataset", "mnist"), 784), *hidden, 10]
    epochs = int(value("--epochs", 1)) + sum(int(a.split("=")[1]) for a in argv if a.startswith("epochs_unsup="))
    weight = RELATIVE_COST.get(f"{rule}:{preset}" if rule == "sdnn" else rule, RELATIVE_COST.get(rule, 1.0))
    return weight * epochs * sum(a * b for a, b in zip(sizes, sizes[1:]))


def run_all(argvs, workers=None, quiet=False, scheduler=None):
    """Run `python experiments.py ARGV --resume --quiet` for every --train ARGV, `workers` at a time (default:
    one per core), each process with one thread and its log beside its JSON; with `scheduler`, the address
    of a Dask scheduler (tcp://HOST:PORT), on that cluster's workers instead (executor.py). A finished run is
    not run again, an interrupted one resumes, a run listed twice runs once (to the most epochs it is
    listed with), a run that another process is training (its .lock) is waited for. Returns the results in
    order; a failed run's result is {"error": the end of its log, "command": argv}, and the others go on.
    The runs start longest first (run_cost)."""
    paths = [run_path(a) for a in argvs]
    todo = {}                                                                  # one entry per run
    for a, p in zip(argvs, paths):
        if not finished_run(a, p) and (p not in todo or parse(a).epochs > parse(todo[p]).epochs):
            todo[p] = a
    todo = dict(sorted(todo.items(), key=lambda item: -run_cost(item[1])))
    import executor
    errors = (executor.run_on(scheduler, list(todo.items()), quiet) if todo and scheduler else
              executor.run_local(list(todo.items()), workers, quiet))
    results = []
    for argv, path in zip(argvs, paths):
        if result := finished_run(argv, path):
            results.append(dict(result, path=path))
        else:
            try:
                with open(os.path.splitext(path)[0] + ".log") as f:
                    tail = f.read()[-2000:]
            except OSError:
                tail = errors.get(path, "no log")
            what = "diverged" if "diverged:" in tail else "failed"      # fit's message: the rule's rates too high
            print(f"run {what}: python experiments.py {' '.join(argv)}\n{tail}", file=sys.stderr)
            results.append({"error": tail, "command": argv})
    return results


# ------------------------------------------------------------------------------------------------
# Figures and studies (figures.py, studies.py): compute -> saved data -> plot.

def fig_config(args, model=None):
    """The FigConfig of a --fig or --study command: its flags, runs under --out/runs."""
    import figures
    return figures.FigConfig(dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs_given, seed=args.seed,
                             model=model, preset=args.preset, set=tuple(args.set or ()), seeds=args.seeds,
                             runs=os.path.join(args.out, "runs"), scheduler=args.scheduler, storage=args.storage,
                             folds=args.folds)


def draw(args, kind):
    """--fig N or --study NAME: compute (unless --replot), save the data and the config, plot, save."""
    import figures
    import studies
    table, name = (figures.FIGURES, args.fig) if kind == "fig" else (studies.STUDIES, args.study)
    if kind == "fig" and name == "all":     # every paper figure; first the training runs of all, at once
        start = time.perf_counter()
        if not args.replot:
            cfg = fig_config(args)
            argvs = figures.all_runs(cfg, args.quick)
            print(figures.suite_time(run_all(argvs, quiet=args.quiet, scheduler=cfg.scheduler), cfg.seed))
        failed, paper = {}, [n for n in table if n[0].isdigit()]
        for n in paper:
            try:                        # one figure that cannot be drawn does not stop the others
                draw(argparse.Namespace(**dict(vars(args), fig=n)), kind)
            except Exception as err:    # whatever it is: printed now, named again at the end
                print(f"error: figure {n}: {err}", file=sys.stderr)
                failed[n] = err
        print(f"{len(paper) - len(failed)} of {len(paper)} figures drawn in {(time.perf_counter() - start) / 3600:.2f} h")
        if failed:
            raise ValueError(f"figures {' '.join(failed)} could not be drawn (each error above); the others "
                             f"are saved" + ("" if args.replot else ", and a re-launch reuses every finished run"))
        return
    if name not in table:
        what = "figure" if kind == "fig" else "study"
        fail(f"unknown {what} {name!r}; valid {'figures' if kind == 'fig' else 'studies'}: {' '.join(sorted(table))}")
    compute, plot, model = table[name]
    stem = os.path.join(args.out, f"fig{name}" if kind == "fig" and name[0].isdigit() else name)
    if args.replot:
        for candidate in (stem, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference",
                                             os.path.basename(stem))):
            if os.path.exists(candidate + ".json"):
                stem = candidate
                break
        data = figures.load_data(stem)
        print(f"replotting the data of {stem}.json")
    else:
        writable(stem + ".json")
        if model is not None and args.preset:
            if not isinstance(model, sdnn.Config) or args.preset not in sdnn.PRESETS:
                raise ValueError(f"--preset {args.preset}: {kind} {name} takes one of {sorted(sdnn.PRESETS)}"
                                 if isinstance(model, sdnn.Config) else f"--preset: {kind} {name} has no sdnn model")
            model = replace(sdnn.PRESETS[args.preset], hidden=model.hidden, etas=model.etas)
        if model is not None:
            model = rule_config(type(model), args.set, **{f.name: getattr(model, f.name)
                                                            for f in dataclasses.fields(model)})
        elif kind == "study" and args.set:
            raise ValueError(f"--set: study {name} has no model config to set")
        cfg = fig_config(args, model)
        data = compute(cfg, np.random.default_rng(args.seed), args.quick)
        meta = {"config": {k: v for k, v in dataclasses.asdict(cfg).items()     # not the cluster's address nor
                           if k not in ("model", "scheduler", "storage")},          # the database's (passwords)
                "model": config_json(model) if model is not None else None,
                "quick": args.quick, "command": args.argv}
        print(f"wrote {figures.save_data(data, stem, meta)}")
    figures.setup_matplotlib()
    print(f"wrote {figures.save_figure(plot(data), os.path.join(args.out, os.path.basename(stem)))[0]}")


def bench(args):
    """--bench [NAME ...]: run the benchmarks and save their numbers."""
    import studies
    names = args.bench or sorted(studies.BENCHES)
    unknown = [n for n in names if n not in studies.BENCHES]
    if unknown:
        fail(f"unknown benchmark {unknown}: choose from {sorted(studies.BENCHES)}")
    path = writable(args.json or os.path.join(args.out, "bench.json"))
    print(f"wrote {save_json({n: studies.BENCHES[n](args.quick, args.data_dir) for n in names}, path)}")


# ------------------------------------------------------------------------------------------------
# Command line.

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--train", metavar="RULE", help="train one rule (see --list)")
    what.add_argument("--fig", metavar="N", help="draw a paper figure (see --list); all: every one")
    what.add_argument("--study", metavar="NAME", help="run a study (see --list)")
    what.add_argument("--bench", nargs="*", metavar="NAME", help="speed benchmarks (all if no NAME)")
    what.add_argument("--list", action="store_true", help="list rules, figures, studies, benchmarks")
    p.add_argument("--dataset", default="mnist", help=f"one of {datasets.DATASETS}")
    p.add_argument("--data-dir", help="dataset directory (default: $SDNN_DATA, then a per-user cache)")
    p.add_argument("--n-valid", type=int, help="validation images carved from the end of the training set")
    p.add_argument("--fold", metavar="I/K", help="validate on the I-th of K equal blocks of the whole training "
                   "set and train on the rest (k-fold cross-validation; instead of --n-valid)")
    p.add_argument("--no-test", action="store_true", help="leave the test set out of the run (tuning runs: "
                   "only the validation split is seen)")
    p.add_argument("--hidden", type=int, nargs="*", default=[500], help="hidden layer sizes, e.g. 500 100")
    p.add_argument("--epochs", type=int, help="training epochs (default 10; a figure's own default)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="set fields of the rule's "
                   "config (may be given more than once), e.g. "
                   "--set etas=2.4,0.105 eta_schedule=linear (sdnn) or --set optimizer=sgd beta2=0.99")
    p.add_argument("--lr", type=float, help="shorthand for --set lr=... (microcircuit: every layer's rate)")
    p.add_argument("--batch", type=int, help="shorthand for --set batch=... (minibatch rules)")
    p.add_argument("--preset", help="sdnn: paper (default), rate, original_code or march_2017 (sdnn.PRESETS); "
                   "a figure: the model it trains")
    p.add_argument("--retests", type=int, default=0, help="sdnn: test the final network N more times on the "
                   "test set, fresh spikes each time, and report the mean and SD (the paper's Fig 6B: 20)")
    p.add_argument("--diagnose", action="store_true", help="sdnn: after every epoch, L0 and L1 of the "
                   "test images without updates, correlated per class (Fig 5)")
    p.add_argument("--dynamics", action="store_true", help="record the learning dynamics after every tenth "
                   "of epoch 1 and every epoch: ||W||, ||dW||, angle to backprop's update, feedback alignment, "
                   "CKA of the hidden layers with a backprop twin (--study dynamics)")
    p.add_argument("--synapses", help="kh: start from the synapses W of this .npz (saved by --train kh); "
                   "with --set epochs_unsup=0 only the top layer learns")
    p.add_argument("--limit", type=int, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result JSON here (default: --out/<rule>_<dataset>_<hash>_s<seed>"
                   ".json, the hash of the run's settings); its checkpoint goes beside it (.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoint (the same "
                   "settings find the same file)")
    p.add_argument("--out", default="results", help="directory for results and figures")
    p.add_argument("--seeds", type=int, help="training figures: seeds per condition (default 2; 1 with --quick)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="send the runs of a figure or study to this "
                   "Dask scheduler's workers (pip install \"dask[distributed]\"; see executor.py)")
    p.add_argument("--storage", metavar="URL", help="--study robustness: Optuna's database, shared by several "
                   "machines (e.g. postgresql://user@host/db; default: a journal file under --out)")
    p.add_argument("--folds", type=int, metavar="K", help="--study robustness: also cross-validate the best "
                   "configurations on K folds of the training set")
    p.add_argument("--quick", action="store_true", help="a small, fast version (smoke tests)")
    p.add_argument("--replot", action="store_true", help="redraw a figure from saved data (or reference/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.epochs_given = args.epochs
    args.epochs = 10 if args.epochs is None else args.epochs
    for name, value in (("--epochs", args.epochs), ("--limit", args.limit), ("--batch", args.batch)):
        if value is not None and value <= 0:
            p.error(f"{name} {value}: must be a positive integer")
    owners = {"--preset": ("sdnn", args.preset), "--retests": ("sdnn", args.retests),
              "--diagnose": ("sdnn", args.diagnose), "--synapses": ("kh", args.synapses)}
    for flag, (rule, value) in owners.items():
        if value and args.train is not None and args.train != rule:
            p.error(f"{flag} is an option of --train {rule}, not of --train {args.train}")
        if value and args.train is None and flag != "--preset":
            p.error(f"{flag} is an option of --train {rule}; it does nothing here")
    if args.dynamics and args.train is None:
        p.error("--dynamics is an option of --train RULE (the dynamics study passes it to its runs)")
    if args.train == "sdnn" and args.preset is None:
        args.preset = "paper"
    if args.fold is not None:
        i, _, k = args.fold.partition("/")
        if not (i.isdigit() and k.isdigit() and 1 <= int(i) <= int(k) and int(k) >= 2):
            p.error(f"--fold {args.fold}: give I/K with 1 <= I <= K and K >= 2, e.g. --fold 1/5")
        if args.n_valid is not None:
            p.error("--fold and --n-valid: give one of them (--fold I/K chooses the validation images)")
        args.fold = (int(i), int(k))
    if args.scheduler and not re.fullmatch(r"[a-z]+://\S+:\d+", args.scheduler):
        p.error(f"--scheduler {args.scheduler}: give the scheduler's address, tcp://HOST:PORT (the one "
                "`dask scheduler` prints; port 8786 by default)")
    if args.scheduler and args.fig is None and args.study is None:
        p.error("--scheduler sends the runs of --fig or --study to a Dask cluster; it does nothing here")
    if (args.storage or args.folds is not None) and args.study != "robustness":
        p.error("--storage and --folds are options of --study robustness; they do nothing here")
    if args.folds is not None and args.folds < 2:
        p.error(f"--folds {args.folds}: cross-validation needs K >= 2 folds (e.g. --folds 5)")
    if args.storage and "://" not in args.storage:
        p.error(f"--storage {args.storage}: give a database URL, e.g. postgresql://user@host/db or "
                "sqlite:///robustness.db (without --storage: a journal file under --out)")
    if args.no_test and (args.retests or args.diagnose):
        p.error("--no-test leaves the test set out: --retests and --diagnose need it")
    if args.seeds is not None and args.seeds <= 0:
        p.error(f"--seeds {args.seeds}: must be a positive number of seeds")
    if args.retests < 0:
        p.error(f"--retests {args.retests}: must be 0 (none) or a positive number of re-tests")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: must be >= 0")
    if any(h <= 0 for h in args.hidden):
        p.error(f"--hidden {' '.join(map(str, args.hidden))}: every hidden size must be positive")
    if args.lr is not None and not 0 < args.lr < float("inf"):
        p.error(f"--lr {args.lr}: the learning rate must be positive and finite (e.g. --lr 1e-3)")
    return args


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def listing():
    import figures
    import studies
    return "\n".join([f"rules (--train):   {' '.join(sorted(TRAINERS))}",
                      f"figures (--fig):   {' '.join(sorted(figures.FIGURES))}",
                      f"studies (--study): {' '.join(sorted(studies.STUDIES))}",
                      f"benchmarks (--bench): {' '.join(sorted(studies.BENCHES))}",
                      f"datasets (--dataset): {' '.join(datasets.DATASETS)}"])


def main(argv=None):
    args = parse(argv)
    try:
        if args.list:
            print(listing())
        elif args.train is not None:
            train(args)
        elif args.fig is not None or args.study is not None:
            draw(args, "fig" if args.fig is not None else "study")
        else:
            bench(args)
    except (ValueError, OSError, datasets.DataError) as err:      # OSError: a file that cannot be read or written
        fail(str(err))


if __name__ == "__main__":
    main()
