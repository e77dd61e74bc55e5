"""studies.py -- comparisons across rules and settings, and the speed benchmarks.

    compute, plot, model = STUDIES["sdnn_fidelity"]      # same contract as figures.FIGURES
    numbers = BENCHES["sdnn"](quick=False, data_dir=None)  # prints as it goes, returns a dict

Studies are saved and plotted through figures.py (save_data, load_data, save_figure); benchmarks return their
measurements for the caller to save. Times are CPU seconds of this process unless a line says wall clock.
"""
import dataclasses
import itertools
import json
import os
import socket
import time
from typing import NamedTuple

import numpy as np

import baselines
import datasets
import sdnn
from figures import new_figure, strip_out


def _error_pct(pred, y):
    return 100.0 * float(np.mean(pred != y))


# ------------------------------------------------------------------------------------------------
# Fidelity of sdnn.py to the original code's learning curves.

def sdnn_fidelity(cfg, rng, quick):
    """Fidelity to the original code's learning curves (784-500-10, etas 0.21/0.21, all 60k images):
    ORIGINAL_CODE preset, spiking: test error on 1,000 random test images after 3k/6k/9k/12k examples
    (the original code, seed 0: 38.7 / 20.0 / 19.9 / 17.2 %; seed 1 after 3k: 52.5 %); RATE preset:
    full test after 20k/60k/120k examples (original: 7.75 / 6.32 / 5.04 %). Seeds cfg.seed, cfg.seed + 1,
    cfg.seed + 2 (one with quick, and a tenth of the examples), each with its own Generator; rng is unused."""
    data = datasets.load(cfg.dataset, data_dir=cfg.data_dir, n_valid=0)
    (x, y), (x_test, y_test) = data["train"], data["test"]
    seeds = [cfg.seed + i for i in range(1 if quick else 3)]
    out = {"quick": quick, "seeds": seeds, "dataset": cfg.dataset,
           "original_code_spiking": {"checkpoints": [3000, 6000, 9000, 12000],
                                     "original_seed0": [38.7, 20.0, 19.9, 17.2],
                                     "original_seed1": [52.5, None, None, None], "runs": {}},
           "rate": {"checkpoints": [20000, 60000, 120000], "original_seed0": [7.75, 6.32, 5.04], "runs": {}}}
    for key, model in (("original_code_spiking", sdnn.ORIGINAL_CODE), ("rate", sdnn.RATE)):
        part = out[key]
        checkpoints = [c // 10 for c in part["checkpoints"]] if quick else part["checkpoints"]
        part["checkpoints_run"] = checkpoints
        for seed in seeds:
            g = np.random.default_rng(seed)
            net = sdnn.init_weights(x.shape[1], model, g)
            state = sdnn.init_state(net)
            order = np.concatenate([g.permutation(len(x)) for _ in range(-(-checkpoints[-1] // len(x)))])
            errs, done = [], 0
            for c in checkpoints:
                sdnn.train_epoch(net, state, x[order[done:c]], y[order[done:c]], model, g)
                done = c
                idx = g.choice(len(x_test), 1000, replace=False) if model.spiking else np.arange(len(x_test))
                errs.append(_error_pct(sdnn.predict(net, x_test[idx], model, g, os.cpu_count() or 1), y_test[idx]))
            print(f"sdnn_fidelity {key} seed {seed}: test error {np.round(errs, 2).tolist()} % after "
                  f"{checkpoints} examples", flush=True)
            part["runs"][str(seed)] = errs
        runs = np.array(list(part["runs"].values()))
        part["mean"], part["sd"] = runs.mean(0).tolist(), runs.std(0).tolist()
    return out


def plot_sdnn_fidelity(data):
    """Test error against training examples: ours (mean +- SD over seeds, and each seed) beside the
    original code's numbers, one panel per preset."""
    fig = new_figure(figsize=(10, 3.8))
    n = len(data["seeds"])
    for ax, key, title in zip(fig.subplots(1, 2), ("original_code_spiking", "rate"),
                              ("ORIGINAL_CODE preset, spiking\n(1,000 random test images per point)",
                               "RATE preset (the original code's default)\n(all 10,000 test images)")):
        part = data[key]
        ours = np.array(part["checkpoints_run"]) / 1000
        for errs in part["runs"].values():
            ax.plot(ours, errs, "o", color="tab:blue", alpha=0.3, ms=4)
        ax.errorbar(ours, part["mean"], yerr=part["sd"], color="tab:blue", marker="o", capsize=3,
                    label=f"sdnn.py, mean $\\pm$ SD over {n} seed{'s' if n > 1 else ''}")
        orig = np.array(part["checkpoints"]) / 1000
        ax.plot(orig, part["original_seed0"], "s--", color="tab:red", label="original code, seed 0")
        if "original_seed1" in part:
            pts = [(c, e) for c, e in zip(orig, part["original_seed1"]) if e is not None]
            ax.plot(*zip(*pts), "^", color="tab:red", mfc="none", ms=8, label="original code, seed 1")
        ax.set_xlabel("training examples (thousands)")
        ax.set_ylabel("test error (%)")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fidelity to the original code (jordan-g/Segregated-Dendrite-Deep-Learning, a41ebc8), "
                 f"784-500-10 on {data['dataset']}" + (" (QUICK: a tenth of the examples)" if data["quick"] else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


# name -> (compute, plot, default model config): the study picks its own presets
STUDIES = {"sdnn_fidelity": (sdnn_fidelity, plot_sdnn_fidelity, None)}


# ------------------------------------------------------------------------------------------------
# Benchmarks: fn(quick, data_dir) -> dict of measured numbers.

def bench_bp(quick, data_dir=None):
    """Epoch time of the BP MLP 784-500-10 (batch 100, float32, Adam) and, if installed, PyTorch's."""
    n, n_in, n_hid, n_out, B = (6_000 if quick else 60_000), 784, 500, 10, 100
    rng = np.random.default_rng(0)
    x = rng.random((n, n_in), dtype=np.float32)
    y = rng.integers(0, n_out, n)
    cfg = baselines.Config(sizes=(n_in, n_hid, n_out))
    params, opt = baselines.make("bp", cfg, rng)
    t = baselines.one_hot(y, n_out)
    start = time.perf_counter()
    for i in range(0, n, B):
        baselines.step("bp", params, opt, x[i:i + B], t[i:i + B], cfg)
    numpy_s = (time.perf_counter() - start) * 60_000 / n
    out = {"bp_numpy_epoch_s": numpy_s, "examples": n}
    print(f"BP 784-500-10, batch 100, float32, Adam: NumPy {numpy_s:.2f} s per 60k epoch")
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: no comparison (pip install torch==2.13.0 to add it)")
        return out
    net = torch.nn.Sequential(torch.nn.Linear(n_in, n_hid), torch.nn.ReLU(), torch.nn.Linear(n_hid, n_out))
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    start = time.perf_counter()
    for i in range(0, n, B):
        adam.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[i:i + B]), yt[i:i + B]).backward()
        adam.step()
    torch_s = (time.perf_counter() - start) * 60_000 / n
    out.update(bp_torch_epoch_s=torch_s, numpy_over_torch=numpy_s / torch_s, torch=torch.__version__,
               threads={"torch": torch.get_num_threads()})
    print(f"  PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads): {torch_s:.2f} s per epoch; "
          f"NumPy / PyTorch time ratio {numpy_s / torch_s:.2f}")
    return out


def bench_rules(quick, data_dir=None):
    """Epoch time of every baselines.py rule on Bartunov's MNIST network 784-256x5-10, tanh, Adam, batch 100.

    Synthetic inputs; the time of a 60,000-image epoch is scaled from 6,000 images (600 with quick).
    The target-propagation rules are timed on the parallel schedule, which does both steps every minibatch
    (an upper bound for alternating, whose epochs do one or the other)."""
    n, sizes, B = (600 if quick else 6_000), (784, 256, 256, 256, 256, 256, 10), 100
    rng = np.random.default_rng(0)
    x = rng.random((n, sizes[0]), dtype=np.float32)
    t = baselines.one_hot(rng.integers(0, sizes[-1], n), sizes[-1])
    cfg = baselines.Config(sizes=sizes, activation="tanh", lr=1e-4, schedule="parallel")
    out = {}
    for rule in baselines.RULES:
        params, opt = baselines.make(rule, cfg, np.random.default_rng(0))
        baselines.step(rule, params, opt, x[:B], t[:B], cfg)                  # warm-up
        start = time.perf_counter()
        for i in range(0, n, B):
            baselines.step(rule, params, opt, x[i:i + B], t[i:i + B], cfg)
        out[rule] = (time.perf_counter() - start) * 60_000 / n
        print(f"{rule:7s} 784-256x5-10 tanh, Adam, batch 100: {out[rule]:6.2f} s per 60k epoch "
              f"({out[rule] / out['bp']:.2f} x BP)", flush=True)
    return {"epoch_s": out, "examples": n, "sizes": list(sizes)}


# The original code (deep_learning.py at a41ebc8), spiking mode, 784-500-10, MNIST images, etas 0.21/0.21:
# ms per training example and per 250-ms test example, lowest and highest of three runs on this machine
# kind (2-core AMD EPYC VM), measured on 2026-11-28 side by side with this benchmark (not in the same run),
# Python 3.11.7, NumPy 2.4.6, OpenBLAS 0.3.31, one thread. Older anchors for other networks were measured
# under other BLAS conditions, about 3x slower, and are not comparable: none is used.
ORIGINAL_CODE_MS = {"784-500-10": {"train": (16.0, 20.8), "test_250ms": (42.6, 56.4)}}


def _median_cpu_per_item(run, start, stop, chunks=10):
    """Median over `chunks` equal chunks of [start, stop) of the CPU seconds per item of run(a, b):
    a burst of load from other processes on the machine slows a few chunks, not the median."""
    edges = np.linspace(start, stop, chunks + 1).astype(int)
    per_item = []
    for a, b in itertools.pairwise(edges):
        t = time.process_time()
        run(a, b)
        per_item.append((time.process_time() - t) / (b - a))
    return float(np.median(per_item))


def _vs_original_code(name, train_s, test_s, test_ms):
    """Speed-up ranges against the original code's measured times (ORIGINAL_CODE_MS), per training
    example and per simulated test millisecond."""
    ref = ORIGINAL_CODE_MS[name]
    train = [lo / (1e3 * train_s) for lo in ref["train"]]
    test = [(ms / 250) / (1e3 * test_s / test_ms) for ms in ref["test_250ms"]]
    print(f"    original code, measured on this machine kind on 2026-11-28 (not in this run): "
          f"{ref['train'][0]}-{ref['train'][1]} ms / train example, {ref['test_250ms'][0]}-"
          f"{ref['test_250ms'][1]} ms / 250-ms test example: x{train[0]:.0f}-{train[1]:.0f} faster training, "
          f"x{test[0]:.0f}-{test[1]:.0f} faster per simulated test ms", flush=True)
    return {"original_code_ms": {k: list(v) for k, v in ref.items()}, "speedup_vs_original_train": train,
            "speedup_vs_original_test_per_ms": test,
            "original_code_note": "measured 2026-11-28 on the same machine kind, not in this run"}


def _in_run_references(net, state, X, y, cfg, rng, quick, train_s, test_s):
    """784-500-10 against references timed in the same run, which the VM's speed drift cancels: the
    NumPy twin of the kernel (sdnn.train_epoch(jit=False)) and, where sdnn has it, reference_phase, a
    plain NumPy per-step simulation of one test phase."""
    n_twin = 2 if quick else 10
    twin_s = _median_cpu_per_item(lambda a, b: sdnn.train_epoch(net, state, X[a:b], y[a:b], cfg, rng, jit=False),
                                  0, n_twin, 2)
    out = {"numpy_twin_ms_per_train_example": 1e3 * twin_s}
    print(f"    NumPy twin (same maths, per-step NumPy like the original code): {1e3 * twin_s:.1f} ms / "
          f"train example, x{twin_s / train_s:.0f} the Numba kernel", flush=True)
    if hasattr(sdnn, "reference_phase"):
        ref_s = _median_cpu_per_item(
            lambda a, b: [sdnn.reference_phase(net, x, cfg.test_ms, None, cfg, rng) for x in X[a:b]], 0, n_twin, 2)
        out.update(reference_ms_per_test_example=1e3 * ref_s, reference_over_kernel_test=ref_s / test_s)
        print(f"    reference_phase (plain NumPy per step): {1e3 * ref_s:.1f} ms / {cfg.test_ms}-ms test example, "
              f"x{ref_s / test_s:.0f} the Numba kernel", flush=True)
    return out


def bench_sdnn(quick, data_dir=None):
    """Speed of sdnn.py: PAPER preset on one core (ms per training example, per 500-ms test example,
    training examples/s, synaptic events/s, ns per synaptic event) for 784-10, 784-500-10,
    784-500-100-10 on MNIST images and 3072-500-10 on synthetic CIFAR-like images; for 784-500-10 the
    speed-up over the original code (a range, against its measurement on this machine kind) and the
    ratio to the NumPy references timed in this run; the RATE preset's epoch; test throughput on all
    cores. Times are CPU time of this process, median over chunks (the other cores may be busy)."""
    rng = np.random.default_rng(0)
    try:
        mnist, mnist_y = (a[:2000] for a in datasets.load("mnist", data_dir=data_dir)["train"])
    except (datasets.DataError, OSError):
        mnist = np.where(rng.random((2000, 784)) < 0.19, rng.random((2000, 784)), 0).astype(np.float32)
        mnist_y = rng.integers(0, 10, len(mnist))
        print("MNIST not found: synthetic MNIST-like inputs (19 % non-zero pixels), random labels")
    n_train, n_test = (60, 10) if quick else (400, 60)
    cifar = np.clip(rng.normal(0.47, 0.25, (20 + n_train, 3072)), 0, 1).astype(np.float32)   # CIFAR-10 mean, SD
    cores = os.cpu_count() or 1
    out = {"cpu_seconds": True, "cores": cores}
    for name, X, hidden in (("784-10", mnist, ()), ("784-500-10", mnist, (500,)),
                            ("784-500-100-10", mnist, (500, 100)), ("3072-500-10", cifar, (500,))):
        cfg = dataclasses.replace(sdnn.PAPER, hidden=hidden, etas=sdnn.PAPER_ETAS[hidden])
        net = sdnn.init_weights(X.shape[1], cfg, rng)
        state = sdnn.init_state(net)
        y = mnist_y if X is mnist else rng.integers(0, 10, len(X))     # random labels change the spike counts
        sdnn.train_epoch(net, state, X[:20], y[:20], cfg, rng)           # compile, leave the initial transient
        counts = []   # the lambdas below run at once, inside this iteration
        train_s = _median_cpu_per_item(
            lambda a, b: counts.append(  # noqa: B023
                sdnn.train_epoch(net, state, X[a:b], y[a:b], cfg, rng)["n_spikes"]),  # noqa: B023
            20, 20 + n_train)
        sizes = (X.shape[1],) + hidden + (10,)
        fan_out = list(sizes[1:]) + [sum(hidden)]                       # input, hidden..., output (apical)
        spikes = np.sum(counts, axis=0) / n_train
        events_per_s = float(np.dot(spikes, fan_out)) / train_s
        test_s = _median_cpu_per_item(
            lambda a, b: [sdnn.test_example(net, x, cfg, rng) for x in X[a:b]], 0, n_test)  # noqa: B023
        out[name] = {"ms_per_train_example": 1e3 * train_s, "ms_per_test_example": 1e3 * test_s,
                     "train_examples_per_s": 1 / train_s, "synaptic_events_per_s": events_per_s,
                     "ns_per_synaptic_event": 1e9 / events_per_s, "spikes_per_train_example": spikes.tolist()}
        print(f"PAPER {name:15s}: {1e3 * train_s:6.3f} ms / train example ({1 / train_s:6.0f} /s), "
              f"{1e3 * test_s:6.3f} ms / {cfg.test_ms}-ms test example, {events_per_s / 1e6:6.1f} M "
              f"synaptic events / s ({1e9 / events_per_s:.2f} ns / event)", flush=True)
        if name in ORIGINAL_CODE_MS:
            out[name].update(_vs_original_code(name, train_s, test_s, cfg.test_ms))
        if name == "784-500-10":
            out[name].update(_in_run_references(net, state, X, y, cfg, rng, quick, train_s, test_s))
    # test throughput on all cores (wall clock), 784-500-10
    cfg = sdnn.PAPER
    net = sdnn.init_weights(784, cfg, rng)
    n_par = 40 if quick else 400
    Xt = mnist[:n_par]
    for jobs in sorted({1, cores}):
        start = time.perf_counter()
        sdnn.predict(net, Xt, cfg, rng, n_jobs=jobs)
        out[f"test_images_per_s_{jobs}_threads"] = n_par / (time.perf_counter() - start)
        print(f"PAPER 784-500-10 test, {jobs} thread(s): {out[f'test_images_per_s_{jobs}_threads']:.0f} "
              f"images / s (wall clock)")
    # RATE preset: seconds per 60,000-example epoch
    cfg = sdnn.RATE
    net = sdnn.init_weights(784, cfg, rng)
    n_rate = 6000 if quick else 20000
    Xr = np.resize(mnist, (n_rate, 784))
    yr = np.resize(mnist_y, n_rate)
    sdnn.train_epoch(net, None, Xr[:100], yr[:100], cfg, rng)
    start = time.process_time()
    sdnn.train_epoch(net, None, Xr, yr, cfg, rng)
    out["rate_784-500-10_s_per_60k_epoch"] = (time.process_time() - start) * 60_000 / n_rate
    print(f"RATE 784-500-10: {out['rate_784-500-10_s_per_60k_epoch']:.2f} s per 60,000-example epoch")
    return out


BENCHES = {"bp": bench_bp, "rules": bench_rules, "sdnn": bench_sdnn}


# ------------------------------------------------------------------------------------------------
# Robustness to hyperparameters: grid sweeps and Bayesian optimisation, per rule (--study robustness).
#
# Every configuration is an ordinary `experiments.py --train` run on the training images with the validation
# split and without the test set (--no-test), launched by experiments.run_all (both cores, or a Dask cluster
# with --scheduler; finished runs are reused, interrupted ones resume). Optuna (Akiba et al. 2019, KDD,
# doi:10.1145/3292500.3330701) proposes trials with its TPE sampler (Bergstra et al. 2011, NeurIPS) and
# stops poor ones with its median pruner (optuna.pruners.MedianPruner). A trial runs one epoch per launch,
# each launch resuming the run's checkpoint, so that this process reports every epoch's validation error
# (Trial.report, should_prune) before the next epoch starts: Optuna lives in this process only, and a
# study interrupted anywhere resumes (its state is in the storage, its runs in their checkpoints).

CHANCE = 0.9          # error of a guess among 10 classes: what a diverged run counts as


class Space(NamedTuple):
    """One rule's search space: the --train arguments it always takes; its defaults, the centre of the grid
    (each hyperparameter is swept alone, the others at the centre); the grid's values; Optuna's range of
    each hyperparameter, (low, high, log scale)."""
    train: tuple
    center: dict
    grid: dict
    ranges: dict


ARCH_GRID = {"units": (100, 300, 500, 1000), "layers": (1, 2, 3)}        # units per hidden layer
ARCH_RANGES = {"units": (100, 1000, True), "layers": (1, 3, False)}
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)                                   # Adam's step size
ETA_GRID = tuple(0.21 * 2.0 ** k for k in range(-3, 4))                    # the paper's 0.21 x 1/8 ... 8
# P0 and P1 enter sdnn's updates only as the products eta0 P0 and eta1 P1 (Eqs 29, 35), so sweeping the
# hidden layers' rate and the output's rate sweeps the error scalings P0 and P1 too. Every hidden layer
# learns at eta_hidden.
SDNN_SPACE = {"center": {"units": 500, "layers": 1, "eta_hidden": 0.21, "eta_out": 0.21, "g_a": 0.0},
              "grid": {**ARCH_GRID, "eta_hidden": ETA_GRID, "eta_out": ETA_GRID, "g_a": (0.0, 0.05, 0.2, 0.6)},
              "ranges": {**ARCH_RANGES, "eta_hidden": (0.01, 4.0, True), "eta_out": (0.01, 4.0, True),
                         "g_a": (0.0, 0.6, False)}}
MLP_SPACE = {"center": {"units": 500, "layers": 1, "lr": 1e-3}, "grid": {**ARCH_GRID, "lr": LR_GRID},
             "ranges": {**ARCH_RANGES, "lr": (3e-5, 3e-2, True)}}
SPACES = {
    "sdnn": Space(("sdnn", "--preset", "paper"), **SDNN_SPACE),
    "sdnn_rate": Space(("sdnn", "--preset", "rate"), **SDNN_SPACE),
    "bp": Space(("bp",), **MLP_SPACE),
    "fa": Space(("fa",), **MLP_SPACE),
    "dfa": Space(("dfa",), **MLP_SPACE),
    # DTP: the README's tanh settings (alpha, sigma) and its rates at the centre, both rates searched; the
    # parallel schedule, so that every epoch trains the forward weights, as for the other rules
    "dtp": Space(("dtp", "--set", "activation=tanh", "alpha=0.1", "sigma=0.1", "schedule=parallel"),
                 center={"units": 500, "layers": 1, "lr": 3e-4, "lr_inv": 3e-4},
                 grid={**ARCH_GRID, "lr": LR_GRID, "lr_inv": (3e-5, 3e-4, 3e-3)},
                 ranges={**ARCH_RANGES, "lr": (3e-5, 3e-2, True), "lr_inv": (1e-6, 1e-2, True)}),
}


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """--study robustness's own settings (--set KEY=VALUE). From the command line: --epochs per configuration
    (default 5; 2 with --quick), --seed, --seeds of the retrained best (3; 1 with --quick), --folds, --storage,
    --scheduler."""
    rules: tuple = tuple(SPACES)      # keys of SPACES
    trials: int = 0                   # Optuna trials per rule, the same budget for every rule; 0: 30 (4 quick)
    grid: bool = True                 # also the grid sweeps
    learns_below: float = 0.0         # a configuration learns if its validation error is below this;
                                      #   0: 10 % (README), 30 % with --quick (2,000 images, 2 epochs)

    def __post_init__(self):
        unknown = [r for r in self.rules if r not in SPACES]
        if unknown:
            raise ValueError(f"--set rules={','.join(self.rules)}: unknown {unknown}; choose from {','.join(SPACES)}")
        if self.trials < 0 or not 0 <= self.learns_below < 1:
            raise ValueError("--set trials=N (N >= 0) and learns_below=E (a fraction, 0 <= E < 1)")


def tuning_argv(rule, p, cfg, quick, epochs, seed, *split):
    """The --train command of rule's configuration p (units, layers and the rule's rates), rates rounded to
    3 significant digits (the run's name and file follow them)."""
    train, *fixed = SPACES[rule].train
    items = [f"{k}={p[k]:.3g}" for k in ("lr", "lr_inv", "g_a") if k in p]
    if "eta_hidden" in p:
        items.append("etas=" + ",".join([f"{p['eta_hidden']:.3g}"] * p["layers"] + [f"{p['eta_out']:.3g}"]))
    argv = ["--train", train, *fixed, "--set", *items, "--dataset", cfg.dataset, "--hidden",
            *[str(p["units"])] * p["layers"], "--epochs", str(epochs), "--seed", str(seed), "--out", cfg.runs,
            *split]
    return argv + (["--data-dir", cfg.data_dir] if cfg.data_dir else []) + (["--quick"] if quick else [])


def grid_configs(rule, quick):
    """The centre, then each grid value of each hyperparameter with the others at the centre (every other
    value with quick)."""
    space = SPACES[rule]
    configs = [dict(space.center)]
    for name, values in space.grid.items():
        for v in values[::2] if quick else values:
            if (c := dict(space.center, **{name: v})) not in configs:
                configs.append(c)
    return configs


def val_at(argv, result, epoch):
    """(validation error after `epoch` epochs, diverged) of a run of experiments.run_all; a diverged run
    counts as CHANCE, a failed one (a crash) as None."""
    import experiments
    if "error" not in result:
        return result["val_error"][epoch - 1], False
    try:
        with open(experiments.run_path(argv)) as f:
            diverged = json.load(f).get("diverged")
    except (OSError, ValueError):
        diverged = False
    return (CHANCE, True) if diverged else (None, False)


def suggest(trial, ranges):
    """Optuna's proposal for every hyperparameter of ranges, rates rounded to 3 significant digits (as run)."""
    p = {}
    for name, (low, high, log) in ranges.items():
        if isinstance(low, int):
            p[name] = trial.suggest_int(name, low, high, log=log)
        else:
            p[name] = float(f"{trial.suggest_float(name, low, high, log=log):.3g}")
    return p


def robustness_storage(cfg):
    """--storage URL (a database every machine reaches), else a JournalStorage file beside the runs (no
    server: optuna.storages.JournalStorage with a JournalFileBackend)."""
    if cfg.storage:
        return cfg.storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = os.path.join(os.path.dirname(cfg.runs) or ".", "robustness.journal")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


def abandoned(trial):
    """A running trial of a process of this machine that has died: its run keeps its checkpoint, and a new
    trial with the same parameters resumes it. Trials of other machines are left to them."""
    host, _, pid = trial.user_attrs.get("owner", "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:          # alive, another user's
        pass
    return False


def tune(rules, cfg, quick, epochs, budget, slots, run):
    """Bayesian optimisation of every rule's study (ask and tell, optuna.study.Study.ask / tell), one round
    at a time: ask each rule's study for up to `slots` trials (never beyond the budget: trials that are
    complete, pruned or running anywhere count), train them epoch by epoch, report each epoch's validation
    error, prune as the median pruner says, tell the last epoch's error. A failed run (a crash, not a
    divergence) does not count; a round of failures only stops the study."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, owner = robustness_storage(cfg), f"{socket.gethostname()}:{os.getpid()}"
    FAIL = optuna.trial.TrialState.FAIL
    names = {rule: f"robustness_{cfg.dataset}{'_quick' if quick else ''}_e{epochs}_s{cfg.seed}_{rule}" for rule in rules}
    while True:
        batch = []
        for rule in rules:
            # a fresh sampler each round, seeded by the study's history: a resumed study proposes what an
            # uninterrupted one would have proposed
            study = optuna.create_study(
                study_name=names[rule], storage=storage, direction="minimize", load_if_exists=True,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, budget // 2))))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if abandoned(t):
                    study.tell(t.number, state=FAIL)
                    study.enqueue_trial(t.params)
            counted = [t for t in study.get_trials(deepcopy=False) if t.state != FAIL]
            study.sampler = optuna.samplers.TPESampler(seed=cfg.seed * 1_000_003 + len(counted))
            for _ in range(min(slots, budget - len(counted))):
                trial = study.ask()
                p = suggest(trial, SPACES[rule].ranges)
                trial.set_user_attr("owner", owner)
                trial.set_user_attr("run_params", p)
                batch.append((rule, study, trial, p))
        if not batch:
            return {rule: names[rule] for rule in rules}
        told = run_trials(batch, cfg, quick, epochs, run)
        if not any(told):
            raise ValueError(f"every run of a round of --study robustness failed: see the logs in {cfg.runs}")


def run_trials(batch, cfg, quick, epochs, run):
    """Train the trials of a round one epoch at a time (each launch resumes its run); returns, per trial,
    True if it was told a value or pruned, False if its run failed."""
    import optuna
    told, active = {}, list(range(len(batch)))
    for epoch in range(1, epochs + 1):
        argvs = [tuning_argv(batch[i][0], batch[i][3], cfg, quick, epoch, cfg.seed, "--no-test") for i in active]
        for i, argv, result in zip(list(active), argvs, run(argvs)):
            rule, study, trial, p = batch[i]
            val, diverged = val_at(argv, result, epoch)
            if val is None:
                trial.set_user_attr("error", result.get("error", "")[-500:])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif diverged:
                trial.set_user_attr("diverged", True)
                study.tell(trial, CHANCE)
            else:
                trial.report(val, epoch)
                if epoch < epochs and not trial.should_prune():
                    continue
                if epoch < epochs:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, val)
            active.remove(i)
            told[i] = val is not None
            state = "failed" if val is None else "diverged" if diverged else (
                f"pruned after epoch {epoch}" if epoch < epochs else "complete")
            print(f"robustness {rule} trial {trial.number}: {state}" +
                  ("" if val is None else f", val error {100 * val:.2f}%") + f"  {p}", flush=True)
    return [told[i] for i in range(len(batch))]


def robustness(cfg, rng, quick):
    """How robust is each rule to its hyperparameters? For every rule of cfg.model.rules (default: sdnn with
    the PAPER and RATE presets, BP, FA, DFA, DTP), on cfg.dataset with its validation split:
    the grid sweeps (each hyperparameter alone: fraction of configurations that learn, best and median
    validation error); Bayesian optimisation with Optuna, the same number of trials for every rule (TPE,
    median pruner on the per-epoch validation error); the best trial retrained on all training images
    (seeds cfg.seed ...) and tested once, after its last epoch; with cfg.folds = K, the best configurations
    cross-validated on K folds of the training set. The test set is read only by the retrained runs.
    Errors in %. rng is unused (each run has its own seed)."""
    import experiments
    rc = cfg.model or RobustnessConfig()
    epochs, budget = cfg.epochs or (2 if quick else 5), rc.trials or (4 if quick else 30)
    threshold = rc.learns_below or (0.3 if quick else 0.1)
    slots = cfg.workers or os.cpu_count() or 1
    if cfg.scheduler:
        import executor
        slots = executor.slots(cfg.scheduler)
    run = lambda argvs: experiments.run_all(argvs, cfg.workers, quiet=True, scheduler=cfg.scheduler)
    out = {"quick": quick, "dataset": cfg.dataset, "epochs": epochs, "trials_per_rule": budget,
           "learns_below": 100 * threshold, "seed": cfg.seed, "folds": cfg.folds, "rules": {}}
    for rule in rc.rules:
        space = SPACES[rule]
        out["rules"][rule] = {"center": space.center, "command": " ".join(strip_out(tuning_argv(
            rule, space.center, cfg, quick, epochs, cfg.seed, "--no-test")))}
    if rc.grid:                      # every rule's grid in one run_all: both cores busy to the end
        configs = [(rule, p) for rule in rc.rules for p in grid_configs(rule, quick)]
        argvs = [tuning_argv(rule, p, cfg, quick, epochs, cfg.seed, "--no-test") for rule, p in configs]
        for (rule, p), argv, result in zip(configs, argvs, run(argvs)):
            val, diverged = val_at(argv, result, epochs)
            out["rules"][rule].setdefault("grid", []).append(
                {"params": p, "val": None if val is None else 100 * val, "diverged": diverged})
    names = tune(rc.rules, cfg, quick, epochs, budget, max(1, min(slots, budget // 5)), run)
    import optuna
    storage, finals = robustness_storage(cfg), []
    for rule in rc.rules:
        study = optuna.load_study(study_name=names[rule], storage=storage)
        r = out["rules"][rule]
        r["study"] = names[rule]
        r["trials"] = [{"number": t.number, "state": t.state.name, "params": t.user_attrs.get("run_params", t.params),
                        "val": None if t.value is None else 100 * t.value,
                        "history": [100 * v for _, v in sorted(t.intermediate_values.items())]}
                       for t in study.trials if t.state.is_finished()]
        best = study.best_trial
        r["best"] = {"number": best.number, "params": best.user_attrs["run_params"], "val": 100 * best.value}
        seeds = range(cfg.seed, cfg.seed + (cfg.seeds or (1 if quick else 3)))
        finals += [(rule, "test", tuning_argv(rule, r["best"]["params"], cfg, quick, epochs, s, "--n-valid", "0"))
                   for s in seeds]
        finals += [(rule, "folds", tuning_argv(rule, r["best"]["params"], cfg, quick, epochs, cfg.seed, "--fold",
                                               f"{k}/{cfg.folds}", "--no-test")) for k in range(1, (cfg.folds or 0) + 1)]
    for (rule, kind, argv), result in zip(finals, run([argv for _, _, argv in finals])):
        val, diverged = val_at(argv, result, epochs)                  # after the last epoch
        if kind == "test" and "error" not in result:
            val = result["test_error"][epochs - 1]
        out["rules"][rule].setdefault(kind, []).append(None if val is None else 100 * val)
    for rule, r in out["rules"].items():
        r["summary"] = robustness_summary(r, 100 * threshold)
    print_robustness(out)
    return out


def robustness_summary(r, threshold):
    """Fraction of grid configurations and of complete trials that learn (val error below threshold, %),
    their best and median validation errors; the retrained best's test error and the folds' validation
    error, mean and SD."""
    def stats(vals):
        vals = [v for v in vals if v is not None]
        return {"n": len(vals), "learn": float(np.mean([v < threshold for v in vals])) if vals else None,
                "best": min(vals, default=None), "median": float(np.median(vals)) if vals else None}
    s = {"grid": stats([g["val"] for g in r.get("grid", [])]),
         "trials": stats([t["val"] for t in r["trials"] if t["state"] == "COMPLETE"]),
         "pruned": sum(t["state"] == "PRUNED" for t in r["trials"])}
    for kind in ("test", "folds"):
        vals = [v for v in r.get(kind, []) if v is not None]
        if vals:
            s[kind] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                       "n": len(vals)}
    return s


def print_robustness(data):
    """The study's table: per rule, the grid's and the trials' fraction that learn, best and median, and
    the best trial retrained (test error) and cross-validated."""
    pct = lambda v: "   -  " if v is None else f"{v:5.2f}%"
    frac = lambda s: "  -  " if s["learn"] is None else f"{100 * s['learn']:3.0f}% of {s['n']:2d}"
    final = lambda s: f"{s['mean']:5.2f} +- {s['sd']:4.2f}% ({s['n']})" if s else "-"
    print(f"robustness on {data['dataset']}, {data['epochs']} epochs per run; learns = validation error "
          f"below {data['learns_below']:g}%" + (" (QUICK)" if data["quick"] else ""))
    print(f"{'rule':10s} {'grid: learn':>13s} {'best':>7s} {'median':>7s} | {'trials: learn':>13s} {'best':>7s} "
          f"{'median':>7s} pruned | {'retrained test':>17s} | {'folds val':>15s}")
    for rule, r in data["rules"].items():
        s = r["summary"]
        g, t = s["grid"], s["trials"]
        print(f"{rule:10s} {frac(g):>13s} {pct(g['best'])} {pct(g['median'])} | {frac(t):>13s} {pct(t['best'])} "
              f"{pct(t['median'])} {s['pruned']:6d} | {final(s.get('test')):>17s} | {final(s.get('folds')):>15s}")


RULE_STYLE = {"sdnn": ("sdnn (PAPER)", "tab:red"), "sdnn_rate": ("sdnn (RATE)", "tab:orange"), "bp": ("BP", "black"),
              "fa": ("FA", "tab:blue"), "dfa": ("DFA", "tab:green"), "dtp": ("DTP", "tab:purple")}
# panel title, {hyperparameter: plotted relative to the rule's default?}, x scale
HYPER_PANELS = (("hidden units per layer", {"units": False}, "log"),
                ("hidden layers", {"layers": False}, "linear"),
                ("learning rate / the rule's default\n(sdnn: the hidden layers' eta)", {"lr": True, "eta_hidden": True},
                 "log"),
                ("second rate / its default\n(sdnn: the output's eta; DTP: the inverses')", {"eta_out": True, "lr_inv": True},
                 "log"),
                ("apical conductance g_a (sdnn)", {"g_a": False}, "linear"))


def _error_axis(ax, data):
    ax.set_yscale("log")
    ax.set_ylim(0.8, 100)
    ax.set_yticks([1, 2, 5, 10, 20, 50, 90], ["1", "2", "5", "10", "20", "50", "90"])
    ax.axhline(data["learns_below"], color="grey", ls="--", lw=1)
    ax.grid(alpha=0.3)


def plot_robustness(data):
    """Top: validation error against each hyperparameter, per rule (lines: the grid, each hyperparameter
    alone; dots: Optuna's trials, crosses where pruned). Bottom: the distribution of validation errors over
    every configuration run, per rule (the "how robust" picture); Optuna's history (best so far); the
    fraction that learns; the best configuration retrained and tested (and cross-validated)."""
    fig = new_figure(figsize=(21, 8.5))
    axes = fig.subplots(2, 5)
    rules = list(data["rules"])
    for ax, (title, keys, scale) in zip(axes[0], HYPER_PANELS):
        for rule in rules:
            r, (label, color) = data["rules"][rule], RULE_STYLE.get(rule, (rule, None))
            key = next((k for k in keys if k in r["center"]), None)
            if key is None:
                continue
            unit = r["center"][key] if keys[key] else 1           # relative to the rule's default, or not
            line = sorted((g["params"][key] / unit, g["val"]) for g in r.get("grid", []) if g["val"] is not None
                          and all(g["params"][k] == v for k, v in r["center"].items() if k != key))
            if line:
                ax.plot(*zip(*line), "o-", color=color, label=label, ms=4)
            for t in r["trials"]:
                y = t["val"] if t["state"] == "COMPLETE" else (t["history"] or [None])[-1]
                if y is not None:
                    ax.plot(t["params"][key] / unit, y, "o" if t["state"] == "COMPLETE" else "x", color=color, alpha=0.3, ms=4)
        ax.set_xscale(scale)
        if "units" in keys or "layers" in keys:
            ticks = ARCH_GRID["units" if "units" in keys else "layers"]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.set_title(title, fontsize=9)
        _error_axis(ax, data)
    axes[0, 0].set_ylabel("validation error (%)")
    from matplotlib.lines import Line2D
    axes[0, 0].legend([Line2D([], [], color=RULE_STYLE.get(r, (r, None))[1], marker="o") for r in rules],
                      [RULE_STYLE.get(r, (r,))[0] for r in rules], fontsize=7)
    ax = axes[1, 0]                                       # distribution over every configuration run
    for i, rule in enumerate(rules):
        r, color = data["rules"][rule], RULE_STYLE.get(rule, (rule, None))[1]
        jitter = np.random.default_rng(i).uniform(-0.12, 0.12, 1000)
        grid = [g["val"] for g in r.get("grid", []) if g["val"] is not None]
        ax.plot(i - 0.2 + jitter[:len(grid)], grid, "s", color=color, alpha=0.5, ms=4, mfc="none")
        for j, t in enumerate(r["trials"]):
            y = t["val"] if t["state"] == "COMPLETE" else (t["history"] or [None])[-1]
            if y is not None:
                ax.plot(i + 0.2 + jitter[-j - 1], y, "o" if t["state"] == "COMPLETE" else "x", color=color, alpha=0.5, ms=4)
        both = grid + [t["val"] for t in r["trials"] if t["val"] is not None and t["state"] == "COMPLETE"]
        if both:
            ax.plot([i - 0.35, i + 0.35], [np.median(both)] * 2, color="k", lw=2)
    ax.set_xticks(range(len(rules)), [RULE_STYLE.get(r, (r,))[0] for r in rules], rotation=30, fontsize=8)
    ax.set_title("every configuration: grid (squares), trials (dots;\nx pruned: last epoch run); bar: median", fontsize=9)
    ax.set_ylabel("validation error (%)")
    _error_axis(ax, data)
    ax = axes[1, 1]                                       # Optuna's history
    for rule in rules:
        r, (label, color) = data["rules"][rule], RULE_STYLE.get(rule, (rule, None))
        done = sorted((t["number"], t["val"]) for t in r["trials"] if t["state"] == "COMPLETE")
        if done:
            n, v = zip(*done)
            ax.plot(n, v, "o", color=color, alpha=0.3, ms=3)
            ax.step(n, np.minimum.accumulate(v), where="post", color=color, label=label)
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("optimisation history: best so far (line), each trial (dots)", fontsize=9)
    _error_axis(ax, data)
    ax = axes[1, 2]                                       # fraction that learns
    for i, rule in enumerate(rules):
        s, color = data["rules"][rule]["summary"], RULE_STYLE.get(rule, (rule, None))[1]
        for dx, part, hatch in ((-0.2, "grid", None), (0.2, "trials", "//")):
            if s[part]["learn"] is not None:
                ax.bar(i + dx, 100 * s[part]["learn"], 0.38, color=color, alpha=0.6, hatch=hatch, edgecolor="k")
    ax.set_xticks(range(len(rules)), [RULE_STYLE.get(r, (r,))[0] for r in rules], rotation=30, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("configurations that learn (%)")
    ax.set_title(f"learn: validation error < {data['learns_below']:g}%\nplain: grid, hatched: Optuna's trials", fontsize=9)
    ax = axes[1, 3]                                       # the best configuration, retrained and tested
    for i, rule in enumerate(rules):
        r, color = data["rules"][rule], RULE_STYLE.get(rule, (rule, None))[1]
        test = [v for v in r.get("test", []) if v is not None]
        ax.plot([i] * len(test), test, "o", color=color, alpha=0.6)
        if test:
            ax.errorbar(i, np.mean(test), np.std(test, ddof=1) if len(test) > 1 else 0, fmt="_", color="k", ms=14,
                        capsize=4)
        folds = [v for v in r.get("folds", []) if v is not None]
        if folds:
            ax.errorbar(i + 0.25, np.mean(folds), np.std(folds, ddof=1) if len(folds) > 1 else 0, fmt="D",
                        color=color, mfc="none", capsize=3)
    ax.set_xticks(range(len(rules)), [RULE_STYLE.get(r, (r,))[0] for r in rules], rotation=30, fontsize=8)
    ax.set_ylabel("error (%)")
    ax.set_title("Optuna's best, retrained on all training images:\ntest error per seed"
                 + (f"; diamonds: {data['folds']}-fold validation error" if data.get("folds") else ""), fontsize=9)
    _error_axis(ax, data)
    axes[1, 4].axis("off")
    table = ["", f"{'':13s}{'grid':>16s}{'Optuna':>9s}{'test':>7s}",
             f"{'':13s}{'learn':>7s}{'best':>7s}{'median':>7s}{'best':>7s}{'mean':>7s}"]
    for rule, r in data["rules"].items():
        s, f = r["summary"], lambda v: "   -  " if v is None else f"{v:6.2f}"
        learn = "  -  " if s["grid"]["learn"] is None else f"{100 * s['grid']['learn']:4.0f}%"
        table.append(f"{RULE_STYLE.get(rule, (rule,))[0]:13s}{learn:>6s} {f(s['grid']['best'])} "
                     f"{f(s['grid']['median'])} {f(r['best']['val'])} {f(s.get('test', {}).get('mean'))}")
    axes[1, 4].text(0, 0.5, "\n".join(["validation and test errors (%)"] + table), fontsize=8, va="center",
                    family="monospace")
    fig.suptitle(f"Robustness to hyperparameters on {data['dataset']}: {data['epochs']} epochs per configuration, "
                 f"{data['trials_per_rule']} Optuna trials per rule (TPE, median pruner)"
                 + ("  (QUICK: at most 2,000 training images)" if data["quick"] else ""), fontsize=11)
    fig.tight_layout()
    return fig


STUDIES["robustness"] = (robustness, plot_robustness, RobustnessConfig())
