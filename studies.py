"""studies.py -- comparisons across rules and settings, and the speed benchmarks.

    compute, plot, model = STUDIES["sdnn_fidelity"]      # same contract as figures.FIGURES
    numbers = BENCHES["sdnn"](quick=False, data_dir=None)  # prints as it goes, returns a dict

Studies are saved and plotted through figures.py (save_data, load_data, save_figure); benchmarks return their
measurements for the caller to save. Times are CPU seconds of this process unless a line says wall clock.
"""
import copy
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
from figures import new_figure, sd, strip_out


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
        part["mean"], part["sd"] = runs.mean(0).tolist(), sd(runs, axis=0).tolist()
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


def _in_run_references(net, state, X, y, cfg, rng, quick, train_s, test_s, n_ref=None):
    """The kernels against references timed in the same run, which the VM's speed drift cancels: the
    NumPy twin of the kernel (sdnn.train_epoch(jit=False)) and, where sdnn has it, reference_phase, a
    plain NumPy per-step simulation of one test phase (n_ref of them; default as many as twin examples)."""
    n_twin = 2 if quick else 10
    twin_s = _median_cpu_per_item(lambda a, b: sdnn.train_epoch(net, state, X[a:b], y[a:b], cfg, rng, jit=False),
                                  0, n_twin, 2)
    out = {"numpy_twin_ms_per_train_example": 1e3 * twin_s, "numpy_twin_over_kernel_train": twin_s / train_s}
    print(f"    NumPy twin (same maths, per-step NumPy like the original code): {1e3 * twin_s:.1f} ms / "
          f"train example, x{twin_s / train_s:.0f} the Numba kernel", flush=True)
    if hasattr(sdnn, "reference_phase"):
        ref_s = _median_cpu_per_item(
            lambda a, b: [sdnn.reference_phase(net, x, cfg.test_ms, None, cfg, rng) for x in X[a:b]], 0,
            n_ref or n_twin, 2)
        out.update(reference_ms_per_test_example=1e3 * ref_s, reference_over_kernel_test=ref_s / test_s)
        print(f"    reference_phase (plain NumPy per step): {1e3 * ref_s:.1f} ms / {cfg.test_ms}-ms test example, "
              f"x{ref_s / test_s:.0f} the Numba kernel", flush=True)
    return out


def bench_sdnn(quick, data_dir=None):
    """Speed of sdnn.py: PAPER preset on one core (ms per training example, per 500-ms test example,
    training examples/s, synaptic events/s, ns per synaptic event) for 784-10, 784-500-10,
    784-500-100-10 on MNIST images and 3072-500-10 on synthetic CIFAR-like images, each with its ratio to
    the NumPy references timed in this run (the kernels' NumPy twin for training, reference_phase for a
    test phase); for 784-500-10 the speed-up over the original code (a range, against its measurement on
    this machine kind); the RATE preset's epoch; test throughput on all cores; the peak memory of a real
    MNIST run. Times are CPU time of this process, median over chunks (the other cores may be busy)."""
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
        out[name].update(_in_run_references(net, state, X, y, cfg, rng, quick, train_s, test_s,
                                            n_ref=2 if X is cifar else None))   # 3072 inputs: ~3 s a phase
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
    out["mnist_run_peak_MB"] = _peak_memory_mnist_run(quick, data_dir)
    return out


def _peak_memory_mnist_run(quick, data_dir):
    """Peak resident memory (MB) of a real `--train sdnn` run on MNIST in a child process: the whole data set
    loaded, one epoch of 200 training images, 200 validation images and (unless quick) the 10,000 test
    images on both cores. None without the MNIST files."""
    import resource
    import subprocess
    import sys
    import tempfile
    root = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, os.path.join(root, "experiments.py"), "--train", "sdnn", "--dataset", "mnist",
                "--limit", "200", "--n-valid", "200", "--epochs", "1", "--quiet", "--json",
                os.path.join(tmp, "r.json")] + (["--no-test"] if quick else [])
        env = dict(os.environ, **({"SDNN_DATA": data_dir} if data_dir else {}))
        r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        print(f"peak memory of an MNIST run: not measured ({r.stderr.strip().splitlines()[-1:]})")
        return None
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024      # kB on Linux
    print(f"peak memory of an MNIST --train sdnn run (child process, {'no test set' if quick else 'with the test'}):"
          f" {peak:.0f} MB{' (over the 1 GB budget)' if peak > 1024 else ''}")
    return peak


def bench_sweep(quick, data_dir=None):
    """The throughput of experiments.run_all's local executor: 8 short sdnn runs (2 epochs of 2,000 MNIST
    images each; quick: 4 runs of 1 epoch) one at a time and one per core, timed serial, parallel, parallel,
    serial, so that a drift of the machine's speed cancels (each number: the mean of its two rounds). The
    robustness issue's target on a 2-core machine: one per core in <= 0.6 of the serial wall time. Needs
    MNIST; idle cores for a fair number."""
    import tempfile

    import experiments
    n, epochs = (4, 1) if quick else (8, 2)
    workers = max(2, os.cpu_count() or 1)                 # one per core (2 on a 1-core machine: ratio ~1)
    with tempfile.TemporaryDirectory() as tmp:
        sweep = lambda out: [["--train", "sdnn", "--quick", "--epochs", str(epochs), "--seed", str(s), "--out",
                              os.path.join(tmp, out)] + (["--data-dir", data_dir] if data_dir else []) for s in range(n)]
        experiments.run_all(sweep("warm")[:1], quiet=True)                  # the kernels compiled and cached
        seconds = {1: 0.0, workers: 0.0}
        for i, w in enumerate((1, workers, workers, 1)):
            start = time.perf_counter()
            failed = [r["error"] for r in experiments.run_all(sweep(str(i)), workers=w, quiet=True) if "error" in r]
            seconds[w] += (time.perf_counter() - start) / 2
            if failed:
                raise RuntimeError(f"bench sweep: {len(failed)} runs failed, the first: {failed[0]}")
    ratio = seconds[workers] / seconds[1]
    print(f"{n} sdnn runs of {epochs} epochs: one at a time {seconds[1]:.1f} s, {workers} at a time "
          f"{seconds[workers]:.1f} s ({ratio:.2f} of the serial time; target <= 0.6 on 2 cores)", flush=True)
    return {"runs": n, "epochs": epochs, "workers": workers, "serial_s": seconds[1], "parallel_s": seconds[workers],
            "ratio": ratio}


BENCHES = {"bp": bench_bp, "rules": bench_rules, "sdnn": bench_sdnn, "sweep": bench_sweep}


# ================================================================================================
# The comparison studies: complexity and plausibility, learning dynamics, datasets, optimizers.
# Every rule of experiments.TRAINERS under one protocol; training runs go through experiments.run_all.
# ================================================================================================

# ------------------------------------------------------------------------------------------------
# Counting floating-point operations by running the code itself.

class Counted(np.ndarray):
    """An ndarray that adds the floating-point operations of every NumPy or SciPy ufunc it takes part in
    to its `tally` ({"flops": n}, shared with every array computed from it):
        matrix product (..., m, k) @ (k, n)      2 m k n (a multiply and an add per term)
        reduction of n elements to r (a sum)    n - r
        any other ufunc (add, exp, tanh, >)     one per output element
    Work on arrays that never meet a Counted one is not counted (the data, fresh random draws and the
    spike thinning on them), nor are copies, indexing, Python scalars and Numba kernels (which see a
    plain array)."""

    def __array_finalize__(self, obj):
        self.tally = getattr(obj, "tally", None)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        tally = next(a.tally for a in (*inputs, *(out or ())) if isinstance(a, Counted))
        plain = [a.view(np.ndarray) if isinstance(a, Counted) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Counted) else o for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        first = result[0] if ufunc.nout > 1 else result
        if method == "at":                                   # ufunc.at(a, indices, b): one per index
            tally["flops"] += int(np.size(plain[1]))
            return None
        if ufunc is np.matmul:
            tally["flops"] += 2 * int(np.size(first)) * int(np.shape(plain[0])[-1])
        elif method == "reduce":
            tally["flops"] += int(np.size(plain[0]) - np.size(first))
        else:
            tally["flops"] += int(np.size(first))
        if out is not None:
            return out[0] if ufunc.nout == 1 else out
        return tuple(_counted(r, tally) for r in result) if ufunc.nout > 1 else _counted(result, tally)


def _counted(obj, tally):
    """obj with every float array in it (dicts, lists, tuples, dataclasses) replaced by a Counted view
    that shares its memory and adds to `tally`; other values as they are."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind != "f":
            return obj
        view = obj.view(Counted)
        view.tally = tally
        return view
    if isinstance(obj, dict):
        return {k: _counted(v, tally) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_counted(v, tally) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _counted(getattr(obj, f.name), tally)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def count_flops(run, *trees):
    """Floating-point operations of run(*counted trees): each tree (a model dict, a Network, arrays) is
    passed as Counted views of its arrays, which share their memory with the originals."""
    tally = {"flops": 0}
    run(*(_counted(t, tally) for t in trees))
    return tally["flops"]


# ------------------------------------------------------------------------------------------------
# Complexity: FLOPs counted by running each rule's code on its own shapes, time per example on one
# core, memory, the backward critical path; and the plausibility table from the rules' own marks.

MINIBATCH = ("bp", "fa", "dfa", "sign", "tp", "dtp", "sdtp", "aosdtp")
TP_FAMILY = ("tp", "dtp", "sdtp", "aosdtp")
# every rule of the comparison; sdnn twice, the paper's spiking model and the original code's rate mode
COMPARED = ("bp", "fa", "dfa", "sign", "dtp", "sdtp", "aosdtp", "kh", "eqprop", "microcircuit",
            "sdnn:paper", "sdnn:rate")


def _run_all(argvs, cfg):
    """experiments.run_all of the study's runs: cfg.workers at a time here, or on the Dask cluster of
    cfg.scheduler (--scheduler)."""
    import experiments
    return experiments.run_all(argvs, cfg.workers, scheduler=cfg.scheduler)


def _rule_argv(entry, hidden=(500,)):
    """`--train` arguments of a COMPARED entry ("sdnn:rate" is --train sdnn --preset rate)."""
    rule, _, preset = entry.partition(":")
    return ["--train", rule, "--hidden", *map(str, hidden)] + (["--preset", preset] if preset else [])


def _split(x, y, n_train, n_eval):
    """An experiments.Split of the first n_train images for training, then n_eval for val and n_eval for test."""
    import experiments
    x, y = x[:n_train + 2 * n_eval], y[:n_train + 2 * n_eval]
    a, b = n_train, n_train + n_eval
    return experiments.Split(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], 10)


def _trainer(entry, data, rng, hidden=(500,), extra=()):
    """The rule's Trainer, exactly as `--train` builds it, for the images of `data` (kh without saving
    its synapses)."""
    import experiments
    args = experiments.parse(_rule_argv(entry, hidden) + list(extra))
    if args.train == "kh":
        cfg = experiments.rule_config(baselines.KHConfig, args.set, n_hidden=args.hidden[0])
        return experiments.kh_trainer(cfg, data, rng, epochs=1)
    return experiments.TRAINERS[args.train](args, data, rng)


def rule_config(entry, trainer):
    """The rule's config dataclass, rebuilt from the Trainer's JSON config."""
    import experiments
    rule = entry.partition(":")[0]
    cls = experiments.CONFIG_CLASSES.get(rule, baselines.Config)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in trainer.config.items() if k in names})


def predictor(entry, cfg, rng):
    """predict(model, X) -> classes for a rule's trainer model, on one thread."""
    rule = entry.partition(":")[0]
    if rule in MINIBATCH:
        return lambda m, X: baselines.predict(baselines.averaged(m["params"], m["opt"]), X, cfg)
    if rule == "kh":
        return lambda m, X: baselines.kh_predict(m["top"]["W"][0], baselines.kh_hidden(m["W"], X, cfg))
    if rule == "eqprop":
        return lambda m, X: baselines.eqprop_predict(m["params"], X, cfg)
    if rule == "microcircuit":
        return lambda m, X: baselines.microcircuit_predict(m["params"], X, cfg)
    return lambda m, X: sdnn.predict(m["net"], X, cfg, rng, n_jobs=1)


class _NoBar:
    """A progress bar that shows nothing (a trainer's epoch function updates one)."""
    def update(self, n):
        pass


def train_flops(entry, trainer, data, rng):
    """FLOPs per training example: two minibatches of the rule's own size through its epoch function (the
    target-propagation rules on the parallel schedule: a forward and an inverse step on each); kh, one step of
    the unsupervised layer and one of the top layer; sdnn, three examples through the NumPy twin of its
    kernels (train_example with jit=False), the rate mode's Numba update added by update_weights's
    NumPy form."""
    rule = entry.partition(":")[0]
    m = trainer.model
    if rule == "sdnn":
        cfg = rule_config(entry, trainer)
        n = 3
        flops = count_flops(lambda net, st: [sdnn.train_example(net, st, data.x[i], data.y[i], cfg, rng, jit=False)
                                             for i in range(n)], m["net"], m["state"])
        if not cfg.spiking:           # rate_train_example updates W in a Numba kernel: count its NumPy form
            def update_all(net):
                for k in range(len(net.W)):
                    sdnn.update_weights(net, k, np.zeros(len(net.b[k])), np.zeros(net.W[k].shape[1]), 0.0, 1.0,
                                        jit=False)
            copy = sdnn.Network([a.copy() for a in m["net"].W], [a.copy() for a in m["net"].b], [])
            flops += n * count_flops(update_all, copy)
        return flops / n
    batch = rule_config(entry, trainer).batch              # kh: its top layer's (and its unsupervised one's: 100)
    perm = np.arange(2 * batch)
    if rule == "kh":                  # one minibatch of the unsupervised rule, then one of the top layer
        cfg = rule_config(entry, trainer)
        unsup = count_flops(lambda W: baselines.kh_step(W, data.x[:batch], cfg.eps0, cfg), m["W"])
        trainer.prepare(m, None)
        return unsup / batch + count_flops(lambda cm: trainer.epoch(cm, perm[:batch], 0, _NoBar()), m) / batch
    return count_flops(lambda cm: trainer.epoch(cm, perm, 0, _NoBar()), m) / len(perm)


def inference_flops(entry, trainer, data, rng):
    """FLOPs per test example of the rule's prediction, on the first 20 training images (sdnn, spiking:
    test phases of the first 5 through the NumPy twin; its count follows the spikes, so the images)."""
    cfg = rule_config(entry, trainer)
    X = data.x[:20]
    if entry.startswith("sdnn") and cfg.spiking:   # test_example, with a state whose arrays are counted
        def run(net):
            for x in X[:5]:
                sdnn.run_phase(net, _counted(sdnn.init_state(net), net.W[0].tally), x, cfg.test_ms, None, cfg, rng,
                               jit=False, learn=False, window=(cfg.t_settle, cfg.test_ms))
        return count_flops(run, trainer.model["net"]) / 5
    predict = predictor(entry, cfg, rng)
    return count_flops(lambda m: predict(m, X), trainer.model) / len(X)


def memory(entry, trainer, n_train_full):
    """Bytes of weights (every synaptic array, fixed feedback included), of learning state (optimizer
    moments) and of activity state (sdnn's traces and potentials; EqProp's persistent particles, one row
    per training example, scaled to n_train_full examples)."""
    def nbytes(obj):
        if isinstance(obj, np.ndarray):
            return obj.nbytes
        if isinstance(obj, dict):
            return sum(nbytes(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(v) for v in obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return sum(nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return 0
    out = {"weights": 0, "learning_state": 0, "activity_state": 0}
    for key, value in trainer.model.items():
        if key == "opt":
            out["learning_state"] += nbytes(value)
        elif key == "particles":
            out["activity_state"] += nbytes(value) * n_train_full // len(value[0])
        elif key in ("state", "avg"):
            out["activity_state"] += nbytes(value)
        else:
            out["weights"] += nbytes(value)
    return out


def backward_steps(marks, n_hidden):
    """The critical path of a rule's marks ("L", "1", "0", ...) for n_hidden hidden layers."""
    formula = marks["backward_steps"][0]
    return int(eval(formula, {"__builtins__": {}}, {"L": n_hidden}))   # a formula in L, from PLAUSIBILITY


def plausibility_rows():
    """The plausibility table: one row per rule, {property: (mark, reason)}, from the marks declared next
    to each rule (baselines.PLAUSIBILITY, sdnn.PLAUSIBILITY); a missing or unknown mark is an error."""
    return check_marks(dict(baselines.PLAUSIBILITY, sdnn=sdnn.PLAUSIBILITY))


def check_marks(rows):
    """rows, or a ValueError naming the first rule with a missing property or a mark not yes/no/partly."""
    for rule, marks in rows.items():
        missing = set(baselines.PROPERTIES) - set(marks)
        bad = {k: mark for k, (mark, _) in marks.items()
               if k != "backward_steps" and mark not in ("yes", "no", "partly")}
        if missing or bad:
            raise ValueError(f"PLAUSIBILITY[{rule!r}]: missing properties {sorted(missing)}, marks other than "
                             f"yes / no / partly {bad}; declare each property of baselines.PROPERTIES as "
                             "(mark, reason)")
    return rows


def as_saved(obj):
    """obj as save_data + load_data give it back: tuples become lists (dicts and lists walked)."""
    if isinstance(obj, dict):
        return {k: as_saved(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_saved(v) for v in obj]
    return obj


def format_table(header, rows):
    """Rows of strings as a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def cost(entry, data, g):
    """One row of the complexity table: a fresh trainer of `entry` on data (the target-propagation rules on
    the parallel schedule), its FLOPs, CPU times over chunks of 200 training (100 with fewer than 2,000)
    and of a fifth of the test images, memory, backward steps."""
    n_train, n_test = len(data.x), len(data.x_test)
    trainer = _trainer(entry, data, g, extra=["--set", "schedule=parallel"] if entry in TP_FAMILY else [])
    model_cfg = rule_config(entry, trainer)
    row = {"train_flops": train_flops(entry, trainer, data, g),
           "inference_flops": inference_flops(entry, trainer, data, g)}
    chunks = n_train // (200 if n_train >= 2000 else 100)
    row["train_ms"] = 1e3 * _median_cpu_per_item(
        lambda a, b: trainer.epoch(trainer.model, np.arange(a, b), 0, _NoBar()), 0, n_train, chunks)
    if trainer.pre_epochs:        # kh: plus one epoch of the unsupervised layer per example
        row["train_ms"] += 1e3 * _median_cpu_per_item(
            lambda a, b: baselines.kh_epoch(trainer.model["W"], data.x[a:b], np.arange(b - a), 0, model_cfg),
            0, n_train, chunks)
    predict = predictor(entry, model_cfg, g)
    row["test_ms"] = 1e3 * _median_cpu_per_item(lambda a, b: predict(trainer.model, data.x_test[a:b]), 0, n_test, 5)
    row["memory_bytes"] = memory(entry, trainer, 50_000)
    rule = entry.partition(":")[0]
    marks = sdnn.PLAUSIBILITY if rule == "sdnn" else baselines.PLAUSIBILITY[rule]
    row["backward_steps"] = {"formula": marks["backward_steps"][0], "L=1": backward_steps(marks, 1),
                             "L=5": backward_steps(marks, 5), "why": marks["backward_steps"][1]}
    return row


def complexity(cfg, rng, quick):
    """Cost of every rule on 784-500-10 (3072-500-10 for CIFAR-10): FLOPs per training example and per
    inference, counted by running the rule's own code on its shapes (Counted); CPU time per training and
    per test example on one core (BLAS on one thread, median over chunks of the real training code:
    2,000 training and 500 test images, 400 and 100 with quick); memory of weights, optimizer state and
    activity state; the sequential backward critical path for 1 and 5 hidden layers; and the
    plausibility table. Also test error against training time, from the finished runs of the datasets
    study, if there are any."""
    from threadpoolctl import threadpool_limits
    try:
        d = datasets.load(cfg.dataset, data_dir=cfg.data_dir)
        x, y = np.concatenate([d["train"][0][:3000], d["test"][0][:1000]]), np.concatenate([d["train"][1][:3000],
                                                                                           d["test"][1][:1000]])
    except (datasets.DataError, OSError) as err:
        raise ValueError(f"complexity times the rules on real images: {err}") from None
    n_train, n_test = (400, 100) if quick else (2000, 500)
    rows = {}
    with threadpool_limits(1):
        for entry in COMPARED:
            rows[entry] = row = cost(entry, _split(x, y, n_train, n_test), np.random.default_rng(cfg.seed))
            print(f"complexity {entry:13s}: {row['train_flops'] / 1e6:8.2f} / {row['inference_flops'] / 1e6:8.2f} "
                  f"MFLOP per training / test example, {row['train_ms']:7.3f} / {row['test_ms']:7.3f} ms, "
                  f"weights {row['memory_bytes']['weights'] / 2**20:.1f} MiB", flush=True)
    out = {"rows": rows, "sizes": [x.shape[1], 500, 10], "quick": quick, "dataset": cfg.dataset,
           "n_train_timed": n_train, "n_test_timed": n_test, "plausibility": plausibility_rows(),
           "properties": baselines.PROPERTIES, "error_time": datasets_error_time(cfg)}
    out["tables"] = complexity_tables(out)
    print(out["tables"]["complexity"] + "\n\n" + out["tables"]["plausibility"])
    return as_saved(out)


def complexity_tables(data):
    """The complexity and plausibility tables as Markdown text."""
    mib = lambda b: f"{b / 2**20:.2f}"
    comp = [[e, f"{r['train_flops'] / 1e6:.2f}", f"{r['inference_flops'] / 1e6:.2f}", f"{r['train_ms']:.3f}",
             f"{r['test_ms']:.3f}", mib(r["memory_bytes"]["weights"]), mib(r["memory_bytes"]["learning_state"]),
             mib(r["memory_bytes"]["activity_state"]),
             f"{r['backward_steps']['formula']} ({r['backward_steps']['L=1']}, {r['backward_steps']['L=5']})"]
            for e, r in data["rows"].items()]
    header = ["rule", "MFLOP / train ex.", "MFLOP / test ex.", "ms / train ex.", "ms / test ex.", "weights MiB",
              "optimizer MiB", "activity MiB", "backward steps (L=1, L=5)"]
    symbol = {"yes": "yes", "no": "no", "partly": "partly"}
    plaus = [[rule] + [symbol[marks[p][0]] for p in data["properties"]] for rule, marks in data["plausibility"].items()]
    reasons = "\n".join(f"- {rule}, {p}: {marks[p][0]} -- {marks[p][1]}"
                        for rule, marks in data["plausibility"].items() for p in data["properties"])
    return {"complexity": format_table(header, comp),
            "plausibility": format_table(["rule", *data["properties"]], plaus), "reasons": reasons}


def datasets_error_time(cfg):
    """{rule: [(wall seconds to the lowest-validation epoch, test error % there) per seed]} on cfg.dataset,
    from the saved datasets study beside cfg.runs (its --out), else from reference/; {} if neither."""
    from figures import load_data
    here = os.path.dirname(os.path.abspath(__file__))
    for stem in (os.path.join(os.path.dirname(cfg.runs), "datasets"), os.path.join(here, "reference", "datasets")):
        if os.path.exists(stem + ".json"):
            table = load_data(stem)["table"]
            return {rule: [(60 * m, t) for m, t in zip(per[cfg.dataset]["minutes_to_best"],
                                                       per[cfg.dataset]["test_at_best_val"])]
                    for rule, per in table.items() if "minutes_to_best" in per.get(cfg.dataset, {})}
    return {}


def plot_complexity(data):
    """FLOPs and time per example (log scales), error against training time, and the plausibility marks
    (shaded by mark, not by merit: "yes" is not always the plausible answer)."""
    import matplotlib.ticker
    fig = new_figure(figsize=(14, 9))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    ax = top.subplots(1, 3)
    names = list(data["rows"])
    pos = np.arange(len(names))
    for a, keys, labels, unit in ((ax[0], ("train_flops", "inference_flops"), ("training", "inference"), 1e6),
                                  (ax[1], ("train_ms", "test_ms"), ("training", "test"), 1)):
        for j, (key, label) in enumerate(zip(keys, labels)):
            a.barh(pos + 0.4 * j - 0.2, [data["rows"][n][key] / unit for n in names], 0.4, label=label)
        a.set_yticks(pos, names, fontsize=8)
        a.invert_yaxis()
        a.set_xscale("log")
        a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # 2x10^0, 3x10^0 ... overlap
        a.legend(fontsize=8)
    ax[0].set_xlabel("MFLOP per example (counted from the code)")
    ax[1].set_xlabel("ms per example, one core (CPU time)")
    ax[0].set_title(f"{'-'.join(map(str, data['sizes']))}" + (" (QUICK)" if data["quick"] else ""), fontsize=9)
    et = data.get("error_time") or {}
    for i, (name, points) in enumerate(et.items()):
        ax[2].plot([p[0] / 60 for p in points], [p[1] for p in points], "o", color=f"C{i % 10}", label=name)
    ax[2].set_xscale("log")
    ax[2].set_xlabel("training wall time to the lowest-validation epoch (min)")
    ax[2].set_ylabel("test error (%)")
    ax[2].set_title("error vs time (runs of --study datasets)" if et else
                    "error vs time: run --study datasets first", fontsize=9)
    if et:
        ax[2].legend(fontsize=6, ncol=2)
    a = bottom.subplots()
    a.set_axis_off()
    props = list(data["properties"])
    rules = list(data["plausibility"])
    color = {"yes": "#9ecae1", "no": "white", "partly": "#deebf7"}
    cells = [[data["plausibility"][r][p][0] for p in props] for r in rules]
    table = a.table(cellText=cells, rowLabels=rules, colLabels=[p.replace("_", "\n") for p in props],
                    cellColours=[[color[c] for c in row] for row in cells], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.3)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_height(cell.get_height() * 2.4)
    a.set_title("Plausibility (marks and reasons declared next to each rule: baselines.PLAUSIBILITY, "
                "sdnn.PLAUSIBILITY)", fontsize=9)
    return fig


STUDIES["complexity"] = (complexity, plot_complexity, None)


# ------------------------------------------------------------------------------------------------
# Learning dynamics: measures of a run between blocks of epoch 1 and after every epoch (`--train RULE
# --dynamics`), and the study that runs every rule with them.

def angle_deg(a, b):
    """Angle in degrees between two arrays taken as flat vectors (NaN if one is zero)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.degrees(np.arccos(np.clip(a @ b / norms, -1, 1)))) if norms > 0 else float("nan")


def linear_cka(X, Y):
    """Linear centred kernel alignment of two representations of the same n examples, X (n, p), Y (n, q):
    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) after centring every column (Kornblith et al. 2019, ICML,
    Eq. 5 / Section 3). 1 for representations equal up to rotation and isotropic scaling, near 0 for
    unrelated ones."""
    X = np.asarray(X, np.float64) - np.mean(X, axis=0)
    Y = np.asarray(Y, np.float64) - np.mean(Y, axis=0)
    denom = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(np.linalg.norm(Y.T @ X) ** 2 / denom) if denom > 0 else float("nan")


def update_angles(rule, params, x, t, cfg):
    """Per hidden layer, the angle between the rule's update of W_l on the examples x, t and backprop's
    on the same examples (both before the optimizer: delta_l^T h_(l-1) summed over the batch)."""
    cache = baselines.forward(params, x, cfg)
    e = baselines.output_error(cache, t, cfg)
    ours = baselines.gradients(cache, baselines.RULES[rule].hidden_errors(params, cache, e, cfg))["W"]
    bp = baselines.gradients(cache, baselines.bp_hidden_errors(params, cache, e, cfg))["W"]
    return [angle_deg(a, b) for a, b in zip(ours[:-1], bp[:-1])]


def forward_weights(entry, m):
    """The forward weight matrices of a rule's trainer model, bottom first."""
    rule = entry.partition(":")[0]
    if rule == "sdnn":
        return list(m["net"].W)
    if rule == "kh":
        return [m["W"], m["top"]["W"][0]]
    return list(m["params"]["W"])


def feedback_pairs(entry, m):
    """Per hidden layer l (bottom first), the feedback that carries its error and what backprop would use
    there, both as (n_out or n_(l+1), n_l) arrays: FA (B_(l+1), W_(l+1)); DFA and sdnn, the direct
    feedback against the product W_L ... W_(l+1); sign symmetry its sign matrix; the target-propagation
    rules the inverse V_(l+1)^T against W_(l+1); the microcircuit B_l^T; backprop and EqProp W_(l+1)
    itself. Empty for Krotov-Hopfield (no feedback) and for DTP with one hidden layer (no inverse)."""
    rule = entry.partition(":")[0]
    if rule == "kh":
        return []
    if rule == "sdnn":
        W, Y = m["net"].W, m["net"].Y
        return [(Y[k].T, np.linalg.multi_dot(W[::-1][:len(W) - 1 - k]) if len(W) - 1 - k > 1 else W[-1])
                for k in range(len(Y))]
    p = m["params"]
    W, L = p["W"], len(p["W"])
    if rule == "fa":
        return [(p["B"][l], W[l]) for l in range(1, L)]
    if rule == "dfa":
        return [(p["D"][l], np.linalg.multi_dot(W[::-1][:L - l]) if L - l > 1 else W[-1]) for l in range(1, L)]
    if rule == "sign":
        return [(baselines.sign_feedback(W[l]), W[l]) for l in range(1, L)]
    if rule in TP_FAMILY:
        return [(p["V"][l + 1][:, :W[l].shape[0]].T, W[l]) for l in range(1, L) if l + 1 in p["V"]]
    if rule == "microcircuit":
        return [(B.T, W[k + 1]) for k, B in enumerate(p["B"])]
    return [(W[l], W[l]) for l in range(1, L)]                  # bp, eqprop: the forward weights themselves


def hidden_layers(entry, m, X, cfg, rng):
    """The hidden representations of the images X (one (n, n_l) array per hidden layer): activities of the
    MLPs, KH's rectified polynomial units, EqProp's free fixed point, the microcircuit's bottom-up rates,
    sdnn's mean rates over a test phase (spiking) or its steady-state rates (rate mode)."""
    rule = entry.partition(":")[0]
    if rule in MINIBATCH:
        return baselines.forward(m["params"], X, cfg)["h"][1:-1]
    if rule == "kh":
        return [baselines.kh_hidden(m["W"], X, cfg)]
    if rule == "eqprop":
        zero = baselines.eqprop_zero_state(m["params"], len(X), cfg.dtype)
        return baselines.relax(m["params"], X, zero, cfg.n_free_eval, cfg.epsilon)[:-1]
    if rule == "microcircuit":
        return baselines.microcircuit_forward(m["params"], X, cfg)["r"][1:-1]
    if cfg.spiking:
        return sdnn.hidden_rates(m["net"], X, cfg, rng)
    return [cfg.phi_max * sdnn.sigma(V) for V in sdnn.rate_forward(m["net"], X, cfg)[:-1]]


def _combine(parts):
    """One epoch's numbers from those of its blocks [(examples, numbers)]: lists joined, numbers averaged
    with the blocks' sizes as weights (None left out), anything else from the last block."""
    out = {}
    for key in parts[-1][1]:
        values = [(n, p.get(key)) for n, p in parts]
        if all(isinstance(v, list) for _, v in values):
            out[key] = [x for _, v in values for x in v]
        elif all(isinstance(v, (int, float)) or v is None for _, v in values) and any(v is not None for _, v in values):
            kept = [(n, v) for n, v in values if v is not None]
            out[key] = sum(n * v for n, v in kept) / sum(n for n, _ in kept)
        else:
            out[key] = values[-1][1]
    return out


def with_dynamics(entry, trainer, data, seed, blocks=10, n_probe=1000, n_angle=500):
    """The trainer, its epoch function wrapped to measure after each of `blocks` blocks of epoch 1 (whole
    minibatches, multiples of 100 examples) and after every later epoch, per layer: ||W||_F and ||dW||_F
    over the interval; the angle between the rule's update and backprop's on the same n_angle training
    examples (the minibatch rules; sdnn records its own per example, as Fig 7A, and in rate mode, whose
    kernel records none, its NumPy twin learns those examples on a copy); the angle between the
    feedback and what backprop would use (feedback_pairs); and the linear CKA of each hidden layer with a
    backprop twin's on n_probe validation images. The twin is a BP MLP of the same sizes trained on the
    same minibatches (the minibatch rules: with the rule's config, from the rule's initial weights). The
    epoch's numbers get a "dynamics" list of points. Measuring uses a Generator of its own and changes
    nothing in the run: the same seed trains the same network with or without it. kh's hidden layer learns
    in its unsupervised epochs, before the measured ones, in which only its top layer learns."""
    rule = entry.partition(":")[0]
    cfg = rule_config(entry, trainer)
    if rule == "sdnn" and (trainer.schedule or {}).get("eta_schedule") == "linear":
        raise ValueError("--dynamics splits epoch 1 into blocks, which eta_schedule=linear cannot take "
                         "(its rates follow the position in the whole epoch); use the default schedule")
    g = np.random.default_rng([seed, 17])
    m = trainer.model
    n_out = data.n_out
    if rule in MINIBATCH:
        twin_cfg = cfg
        twin = {"W": [w.copy() for w in m["params"]["W"]], "b": [b.copy() for b in m["params"]["b"]]}
    else:
        sizes = [data.x.shape[1]] + [w.shape[0] for w in forward_weights(entry, m)]
        twin_cfg = baselines.Config(sizes=tuple(sizes))
        twin = baselines.init(twin_cfg.sizes, twin_cfg, g)
    m["dynamics"] = {"twin": twin, "twin_opt": baselines.init_optimizer(twin), "rng": g}
    t = baselines.one_hot(data.y, n_out, twin_cfg.dtype)
    probe = (data.x_val if len(data.x_val) else data.x)[:n_probe]
    n_batch = getattr(cfg, "batch", 1)
    step = int(np.lcm(n_batch, 100))
    epoch = trainer.epoch

    def measure(mm, before, seen, numbers):
        W = forward_weights(entry, mm)
        point = {"examples": int(seen), "W_norm": [float(np.linalg.norm(w)) for w in W],
                 "dW_norm": [float(np.linalg.norm(w - w0)) for w, w0 in zip(W, before or W)]}
        point["angle_bp"] = None                                # no backprop update to compare with
        if rule in MINIBATCH:
            point["angle_bp"] = update_angles(rule, mm["params"], data.x[:n_angle], t[:n_angle], cfg)
        elif rule == "sdnn" and numbers is not None and numbers.get("mean_angle_deg") is not None:
            point["angle_bp"] = [numbers["mean_angle_deg"]]     # first hidden layer, mean over the block
        elif rule == "sdnn" and not cfg.spiking and len(mm["net"].W) > 1:   # the rate kernel records none:
            net = copy.deepcopy(mm["net"])                      # its NumPy twin's, learning on a copy
            point["angle_bp"] = [float(np.mean([sdnn.rate_train_example(net, x, int(c), cfg)["angle"]
                                                for x, c in zip(data.x[:n_angle], data.y[:n_angle])]))]
        point["feedback_angle"] = [angle_deg(f, w) for f, w in feedback_pairs(entry, mm)]
        ours = hidden_layers(entry, mm, probe, cfg, mm["dynamics"]["rng"])
        theirs = baselines.forward(mm["dynamics"]["twin"], probe, twin_cfg)["h"][1:-1]
        point["cka_bp_twin"] = [linear_cka(a, b) for a, b in zip(ours, theirs)]
        return point

    def train_twin(mm, perm):
        for i in range(0, len(perm), twin_cfg.batch):
            idx = perm[i:i + twin_cfg.batch]
            baselines.step("bp", mm["dynamics"]["twin"], mm["dynamics"]["twin_opt"], data.x[idx], t[idx], twin_cfg)

    def dynamics_epoch(mm, perm, index, bar):
        n_blocks = blocks if index == 0 else 1
        cuts = [min(len(perm), step * round(len(perm) * i / n_blocks / step)) for i in range(1, n_blocks)]
        points = [measure(mm, None, 0, None)] if index == 0 else []
        parts, done, spent = [], index * len(perm), 0.0
        for part in np.split(perm, sorted(set(cuts))):
            if not len(part):
                continue
            before = [w.copy() for w in forward_weights(entry, mm)]
            numbers = epoch(mm, part, index, bar)
            start = time.perf_counter()
            train_twin(mm, part)
            done += len(part)
            points.append(measure(mm, before, done, numbers))
            spent += time.perf_counter() - start
            parts.append((len(part), numbers))
        return dict(_combine(parts), dynamics=points, dynamics_seconds=spent)

    return dataclasses.replace(trainer, epoch=dynamics_epoch)


KH_UNSUP_EPOCHS = 30      # the comparison's unsupervised epochs of kh (its default, 100, is the paper's scale;
                          # the fields of --fig kh-fields are far from converged after 10)


# Settings of the comparison that are not a rule's defaults: the target-propagation rules learn on
# Bartunov's parallel schedule, so that every rule updates its forward weights on every minibatch (on the
# alternating schedule every other epoch trains only the inverses, and DTP with one hidden layer has none).
COMPARISON_SETTINGS = {"dtp": ["schedule=parallel"], "sdtp": ["schedule=parallel"], "aosdtp": ["schedule=parallel"]}


def study_argv(entry, cfg, quick, epochs, seed, sets=(), flags=(), hidden=(500,)):
    """The --train command of one run of a comparison study (--set items `sets`, other options `flags`),
    its runs under cfg.runs; quick: 1,000 of the 2,000 training images of --quick."""
    argv = _rule_argv(entry, hidden) + ["--dataset", cfg.dataset, "--epochs", str(epochs), "--seed", str(seed),
                                        "--out", cfg.runs]
    argv += ["--data-dir", cfg.data_dir] if cfg.data_dir else []
    items = ([f"epochs_unsup={1 if quick else KH_UNSUP_EPOCHS}"] if entry == "kh" else []) \
        + COMPARISON_SETTINGS.get(entry, []) + list(sets)
    argv += list(flags) + (["--set", *items] if items else [])
    return argv + (["--quick", "--limit", "1000"] if quick else [])


def dynamics(cfg, rng, quick):
    """Learning dynamics of every rule on 784-500-10 (COMPARED; kh with KH_UNSUP_EPOCHS unsupervised
    epochs first; COMPARISON_SETTINGS), one seed, cfg.epochs epochs (default 10; quick: 2 epochs on 1,000
    images): the runs
    `--train RULE --dynamics` (see with_dynamics) through experiments.run_all, measured after each tenth
    of epoch 1 (quick: quarter) and after every epoch. Per rule and layer: ||W||_F, ||dW||_F, the angle to
    backprop's update, the feedback's angle to what backprop would send, CKA with a backprop twin."""
    epochs = cfg.epochs or (2 if quick else 10)
    argvs = [study_argv(entry, cfg, quick, epochs, cfg.seed, flags=["--dynamics"]) for entry in COMPARED]
    out = {"rules": {}, "epochs": epochs, "quick": quick, "dataset": cfg.dataset, "seed": cfg.seed,
           "commands": {}}
    for entry, result in zip(COMPARED, _run_all(argvs, cfg)):
        if "error" in result:
            continue
        # [:epochs]: a finished longer run is reused (a run's name leaves out its epochs): its first epochs
        points = [p for epoch in result["dynamics"][:epochs] for p in epoch]
        out["rules"][entry] = {key: [p.get(key) for p in points] for key in points[0]}
        out["rules"][entry]["test_error"] = result["test_error"][:epochs]
        out["commands"][entry] = " ".join(strip_out(result["command"]))
        last = points[-1]
        print(f"dynamics {entry:13s} after {last['examples']} examples: angle to BP {last['angle_bp']}, feedback "
              f"{np.round(last['feedback_angle'], 1).tolist()} deg, CKA with the BP twin "
              f"{np.round(last['cka_bp_twin'], 3).tolist()}", flush=True)
    if not out["rules"]:
        raise ValueError(f"no dynamics run finished: see the logs in {cfg.runs}")
    return as_saved(out)


def plot_dynamics(data):
    """One panel per quantity, rules as lines, first hidden layer (the JSON has every layer): ||W||_F,
    ||dW||_F / ||W||_F per interval (tenths of epoch 1, then epochs), angle to backprop's update,
    feedback alignment, CKA with the backprop twin; against training examples (log scale)."""
    import matplotlib.ticker
    fig = new_figure(figsize=(16, 8.5))
    axes = fig.subplots(2, 3).ravel()
    panels = (("W_norm", "$\\|W_1\\|_F$", True), ("dW_rel", "$\\|\\Delta W_1\\|_F / \\|W_1\\|_F$ per interval", True),
              ("angle_bp", "angle to backprop's update of $W_1$ (deg)", False),
              ("feedback_angle", "feedback vs backprop's, layer 1 (deg)", False),
              ("cka_bp_twin", "linear CKA, hidden layer 1 vs BP twin", False))
    for i, (entry, r) in enumerate(data["rules"].items()):
        x = np.array(r["examples"], float)
        keep = x > 0
        style = {"color": f"C{i % 10}", "ls": "--" if i >= 10 else "-", "lw": 1.2, "marker": ".", "ms": 3,
                 "label": entry}
        for ax, (key, label, log) in zip(axes, panels):
            if key == "dW_rel":
                y = [d[0] / w[0] if w[0] else np.nan for d, w in zip(r["dW_norm"], r["W_norm"])]
            else:
                y = [np.nan if v is None or not v or v[0] is None else v[0] for v in r[key]]
            y = np.array(y, float)
            if np.isfinite(y[keep]).any():
                ax.plot(x[keep], y[keep], **style)
            ax.set_ylabel(label, fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if log:
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes[:5]:
        ax.set_xlabel("training examples")
        ax.grid(alpha=0.3)
    axes[2].axhline(90, color="k", lw=0.5)
    axes[3].axhline(90, color="k", lw=0.5)
    handles, labels = axes[4].get_legend_handles_labels()
    for ax in axes[:4]:
        h, l = ax.get_legend_handles_labels()
        for a, b in zip(h, l):
            if b not in labels:
                handles.append(a)
                labels.append(b)
    axes[5].set_axis_off()
    axes[5].legend(handles, labels, fontsize=8, ncol=2, loc="center")
    axes[5].text(0.5, 0.05, "with one hidden layer, DFA's feedback is FA's:\nfrom one seed their lines coincide",
                 transform=axes[5].transAxes, ha="center", fontsize=8)
    fig.suptitle(f"Learning dynamics on {data['dataset']}, 784-500-10, seed {data['seed']}, {data['epochs']} epochs "
                 f"(epoch 1 in blocks){' -- QUICK: 1,000 images' if data['quick'] else ''}; missing lines: the "
                 "quantity does not exist for that rule", fontsize=10)
    fig.tight_layout()
    return fig


STUDIES["dynamics"] = (dynamics, plot_dynamics, None)


# ------------------------------------------------------------------------------------------------
# One protocol for every rule (--study datasets, --study optimizers): each rule's learning rate chosen
# on the validation split by the same small budget, then several seeds, the test error read at the
# lowest-validation epoch.

# What the protocol tunes: the rule's learning rate(s), as a field of its config and its starting value
# (the rule's default, or the setting already chosen on MNIST's validation split, see the README's tuning
# notes); BASE_SETTINGS are the other settings of those choices. Every rate of a rule is scaled together.
RATE_FIELD = {**{r: ("lr", (1e-3,)) for r in MINIBATCH}, "kh": ("lr", (1e-6,)), "eqprop": ("alphas", (0.8, 0.4)),
              "microcircuit": ("etas", baselines.MICROCIRCUIT_ETAS[1]), "sdnn:paper": ("etas", (2.4, 0.105)),
              "sdnn:rate": ("etas", sdnn.PAPER_ETAS[(500,)])}
BASE_SETTINGS = {"eqprop": ["t_half=5000"], "sdnn:paper": ["init_gain=0.51", "eta_schedule=linear"]}
LR_FACTORS = (1 / 3, 1.0, 3.0)        # the budget: three runs per rule and dataset, factors on the rate(s)
QUICK_FACTORS = (1.0,)                # quick: the path only (the choice itself is tested on stand-in curves)


def rate_setting(entry, factor, rate=None):
    """--set item of entry's learning rate(s) (rate: (field, base values), default RATE_FIELD[entry]) times
    factor, e.g. 'etas=0.7,0.035'."""
    field, base = rate or RATE_FIELD[entry]
    return f"{field}=" + ",".join(f"{factor * r:.4g}" for r in base)


def present(name, data_dir):
    """Whether the files of dataset `name` are on this machine (without reading them): CIFAR-10's archive
    or its extracted folder; MNIST and Fashion-MNIST are downloaded by the runs when missing."""
    if name != "cifar10":
        return True
    folder = os.path.join(datasets.data_dir(data_dir), "cifar10")
    return (os.path.exists(os.path.join(folder, "cifar-10-python.tar.gz"))
            or os.path.isdir(os.path.join(folder, datasets.CIFAR_FOLDER)))


def _run_minutes(result):
    return (sum(result["seconds_per_epoch"]) + sum(result["eval_seconds_per_epoch"])
            + sum(result.get("pre_seconds_per_epoch", []))) / 60


def _usable(result):
    """A run that finished without diverging (run_all gives a failed run as {"error": ...})."""
    return "error" not in result and not result.get("diverged")


def _first_epochs(result, epochs):
    """A finished run that a longer command trained (a run's name leaves out its epochs, so it is reused):
    what it was after `epochs` epochs, the per-epoch lists of experiments.log_epoch cut there."""
    if "error" in result or result["epochs"] <= epochs:
        return result
    cut = {k: result[k][:epochs] for k in ("train_error", "val_error", "test_error", "seconds_per_epoch",
                                           "eval_seconds_per_epoch")}
    # a divergence or a stall after those epochs is not theirs (experiments.fit flags them when they happen)
    return {**{k: v for k, v in result.items() if k != "stuck_at_chance"}, **cut, "epochs": epochs, "diverged": False}


def _minutes_to(result, epoch):
    """Wall minutes of a run's first `epoch` epochs (training, testing; kh's unsupervised stage)."""
    return (sum(result["seconds_per_epoch"][:epoch]) + sum(result["eval_seconds_per_epoch"][:epoch])
            + sum(result.get("pre_seconds_per_epoch", []))) / 60


def _mean_curve(runs, key, n):
    """Per epoch (the first n), the mean over runs of their `key` errors, in % (NaN where not measured)."""
    return np.mean([[100 * e if e is not None else np.nan for e in r[key][:n]] for r in runs], axis=0).tolist()


def _at_best_val(result):
    """(epoch of the lowest validation error, 1-based; test error there, %)."""
    best = int(np.argmin(result["val_error"]))
    return best + 1, 100 * result["test_error"][best]


def protocol(cfg, quick, rows, names, epochs, n_seeds, factors):
    """Run the protocol for rows {label: (entry, [--set items], hidden[, (rate field, base values)])} on the
    datasets `names` (the rate defaults to RATE_FIELD[entry]): for each
    row and dataset, len(factors) tuning runs (seed cfg.seed, the rate times each factor, `epochs` epochs)
    through experiments.run_all; the lowest validation error of any epoch picks the factor; that setting
    then runs with seeds cfg.seed ... cfg.seed + n_seeds - 1 (the tuning run is seed cfg.seed's, reused).
    Returns {label: {dataset: summary}} with the candidates, the choice, the test error at each seed's
    lowest-validation epoch (mean and SD), the mean curves and the budget (runs, epochs, minutes)."""

    def argv(row, ds, factor, seed):
        entry, items, hidden, *rate = row
        c = dataclasses.replace(cfg, dataset=ds)
        return study_argv(entry, c, quick, epochs, seed, [*BASE_SETTINGS.get(entry, []), *items,
                                                          rate_setting(entry, factor, *rate)], hidden=hidden)
    keys = [(label, ds) for label in rows for ds in names]
    tuning = {(label, ds, f): argv(rows[label], ds, f, cfg.seed) for label, ds in keys for f in factors}
    tuned = {k: _first_epochs(r, epochs) for k, r in zip(tuning, _run_all(list(tuning.values()), cfg))}
    chosen, final = {}, {}
    for label, ds in keys:
        ok = {f: r for f in factors if _usable(r := tuned[label, ds, f])}
        if ok:
            chosen[label, ds] = min(ok, key=lambda f, ok=ok: min(ok[f]["val_error"]))
            for seed in range(cfg.seed, cfg.seed + n_seeds):
                final[label, ds, seed] = argv(rows[label], ds, chosen[label, ds], seed)
    finals = {k: _first_epochs(r, epochs) for k, r in zip(final, _run_all(list(final.values()), cfg))}
    out = {label: {} for label in rows}
    for label, ds in keys:
        cands = [{"factor": f, "minutes": _run_minutes(r) if "error" not in (r := tuned[label, ds, f]) else None,
                  "lowest_val_error": 100 * min(r["val_error"]) if _usable(r) else None} for f in factors]
        if (label, ds) not in chosen:
            out[label][ds] = {"candidates": cands, "failed": "every tuning run failed or diverged"}
            continue
        runs = [r for (lab, d, _), r in finals.items() if (lab, d) == (label, ds) and _usable(r)]
        best = [_at_best_val(r) for r in runs]
        test = [t for _, t in best]
        n = min(r["epochs"] for r in runs)
        extra = [r for (lab, d, seed), r in finals.items()
                 if (lab, d) == (label, ds) and seed != cfg.seed and "error" not in r]
        tuning_runs = [r for f in factors if "error" not in (r := tuned[label, ds, f])]
        out[label][ds] = {
            "candidates": cands, "factor": chosen[label, ds],
            "setting": rate_setting(rows[label][0], chosen[label, ds], *rows[label][3:]),
            "command": " ".join(strip_out(runs[0]["command"])), "seeds": [r["seed"] for r in runs],
            "test_at_best_val": test, "best_epoch": [e for e, _ in best], "mean": float(np.mean(test)),
            "minutes_to_best": [_minutes_to(r, e) for r, (e, _) in zip(runs, best)],
            "sd": float(sd(test)),
            "curves": {k: _mean_curve(runs, f"{k}_error", n) for k in ("train", "val", "test")},
            "budget": {"runs": len(tuning_runs) + len(extra), "epochs": sum(r["epochs"] for r in tuning_runs + extra),
                       "minutes": sum(_run_minutes(r) for r in tuning_runs + extra),
                       "tuning_minutes": sum(_run_minutes(r) for r in tuning_runs)}}
        s = out[label][ds]
        print(f"{label:13s} {ds:13s}: test error at the lowest-val epoch {s['mean']:.2f} +- {s['sd']:.2f} % "
              f"({len(test)} seeds; {s['setting']}, budget {s['budget']['epochs']} epochs, "
              f"{s['budget']['minutes']:.1f} min)", flush=True)
    return out


# ------------------------------------------------------------------------------------------------
# Every rule on every dataset.

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def _bartunov(items, epochs, published, schedule=""):
    """A row of Bartunov et al. (2018)'s Table 1: 784-256x5-10, tanh, the weights' running average tested."""
    return [256] * 5, ["activation=tanh", *items, "ema=0.9998"], epochs, published, \
        "Bartunov et al. 2018, Table 1" + schedule, []


# The study's second table: each rule at its own published network on MNIST, beside the published test
# error: (hidden, --set items, epochs, published %, source, other options), the settings of the README's Results (chosen
# on the validation split). Bartunov's rules test a Polyak average of their weights (ema=0.9998; learning
# unchanged), which lowers FA, DFA, SDTP and AO-SDTP by 0.3-0.5 points at their constant rates (Results).
# sdnn's own network is the paper's 784-500-10 with the code that made its figures (MARCH_2017 at the
# paper's rates), on the paper's protocol (PAPER_PROTOCOL: all 60,000 images, no validation split, the
# mean of 20 re-tests of the final network), i.e. the runs of --fig 6, reused when they share --out.
PAPER_PROTOCOL = ["--n-valid", "0", "--retests", "20"]
OWN_ARCHITECTURE = {
    "bp": _bartunov(["lr=1.5e-4"], 60, 1.48),
    "fa": _bartunov(["lr=3e-4"], 100, 1.85),            # the rate chosen with ema (1.7e-4 without)
    "dfa": _bartunov(["lr=1e-3"], 40, 2.75),
    "dtp": _bartunov(["lr=3e-4", "alpha=0.1", "sigma=0.1", "lr_inv=3e-4"], 100, 1.83, " (alternating)"),
    "sdtp": _bartunov(["lr=3e-4", "sigma=0.1", "lr_inv=1e-6"], 100, 2.28, " (alternating)"),
    "aosdtp": _bartunov(["lr=6e-4", "sigma=0.1", "lr_inv=3e-6"], 100, 1.86, " (alternating)"),
    "kh": ([2000], ["epochs_unsup=120", "eps0=0.04", "lr=3e-6"], 200, 1.5,   # top layer: 200 epochs at 3e-6
           "Krotov & Hopfield 2019 (recalled, unverified)", []),
    "eqprop": ([500], ["alphas=0.8,0.4", "t_half=5000"], 20, 2.5, "Scellier & Bengio 2017, 2-3 % (midpoint)", []),
    "microcircuit": ([500, 500], [], 40, 1.96, "Sacramento et al. 2018", []),
    "sdnn:march_2017": ([500], [], 60, 4.1, "Guerguiev et al. 2017, Fig 6 (its protocol: all 60,000 images, "
                        "60 epochs, mean of 20 re-tests)", PAPER_PROTOCOL),
}


def _own_error(result):
    """A published-architecture run's test error (%): the mean of its final re-tests where it trained on
    the paper's protocol (no validation split), else the test error at its lowest-validation epoch."""
    if result.get("test_retests") and result.get("n_valid") == 0:
        return 100 * float(np.mean(result["test_retests"]))
    return _at_best_val(result)[1]


def datasets_study(cfg, rng, quick, entries=COMPARED):
    """Every rule (COMPARED) on MNIST, Fashion-MNIST and CIFAR-10 (784-500-10; 3072-500-10), one protocol
    (`protocol`): the rate(s) chosen among LR_FACTORS times each rule's starting rate on the validation
    split (seed cfg.seed), then cfg.seeds seeds (default 3), test error at the lowest-validation epoch, mean
    +- SD; cfg.epochs epochs (default 20). CIFAR-10 runs where its files are present, else its column says
    "not run here". Then, on MNIST, each rule at its own published architecture with the README's settings
    (OWN_ARCHITECTURE, no further tuning), beside the published number. quick: cfg.dataset only, the
    starting rates only, 1 seed, 2 epochs on 1,000 images, no published architectures."""
    names = (cfg.dataset,) if quick else DATASETS
    status = {ds: "run" if present(ds, cfg.data_dir) else "not run here" for ds in names}
    for ds, s in status.items():
        if s != "run":
            print(f"datasets: {ds} not found under {datasets.data_dir(cfg.data_dir)}: its column is 'not run here'")
    epochs, n_seeds = cfg.epochs or (2 if quick else 20), cfg.seeds or (1 if quick else 3)
    rows = {entry: (entry, [], (500,)) for entry in entries}
    table = protocol(cfg, quick, rows, [ds for ds in names if status[ds] == "run"], epochs, n_seeds,
                     QUICK_FACTORS if quick else LR_FACTORS)
    rules = {e.partition(":")[0] for e in entries}
    own = {} if quick else own_architectures(cfg, [e for e in OWN_ARCHITECTURE if e.partition(":")[0] in rules], n_seeds)
    return {"table": table, "status": status, "own": own, "epochs": epochs, "seeds": n_seeds, "quick": quick,
            "factors": list(QUICK_FACTORS if quick else LR_FACTORS),
            "starting_rates": {e: RATE_FIELD[e] for e in entries}, "base_settings": BASE_SETTINGS,
            "comparison_settings": COMPARISON_SETTINGS}


def own_architectures(cfg, entries, n_seeds):
    """Each rule at its own architecture on MNIST with the README's settings, n_seeds seeds: the test
    error (_own_error) beside the published number."""
    argvs, keys = [], []
    for entry in entries:
        hidden, items, epochs, _, _, flags = OWN_ARCHITECTURE[entry]
        for seed in range(cfg.seed, cfg.seed + n_seeds):
            argv = _rule_argv(entry, hidden) + ["--dataset", "mnist", "--epochs", str(epochs), "--seed", str(seed),
                                                "--out", cfg.runs] + (["--set", *items] if items else []) + flags
            argvs.append(argv + (["--data-dir", cfg.data_dir] if cfg.data_dir else []))
            keys.append(entry)
    out = {}
    for entry, r in zip(keys, _run_all(argvs, cfg)):
        r = _first_epochs(r, OWN_ARCHITECTURE[entry][2])
        if _usable(r):
            o = out.setdefault(entry, {"test_error": [], "minutes": [],
                                       "command": " ".join(strip_out(r["command"]))})
            o["test_error"].append(_own_error(r))
            o["minutes"].append(_run_minutes(r))
    for entry, o in out.items():
        hidden, _, epochs, published, source, _ = OWN_ARCHITECTURE[entry]
        t = o["test_error"]
        o.update(mean=float(np.mean(t)), sd=float(sd(t)), published=published,
                 source=source, sizes="-".join(map(str, [784, *hidden, 10])), epochs=epochs)
        print(f"own architecture {entry:13s} {o['sizes']}: {o['mean']:.2f} +- {o['sd']:.2f} % "
              f"(published {published} %, {source}); within +0.5 points: {o['mean'] <= published + 0.5}")
    return out


EDGE_NOTE = "† the validation split chose the grid's lowest or highest rate: a wider grid may do better."


def with_edge_note(table):
    """A Markdown table followed by EDGE_NOTE if any of its cells is marked †."""
    return table + ("\n\n" + EDGE_NOTE if "†" in table else "")


def at_edge(s, factors):
    """' †' when a protocol result's chosen factor is the smallest or largest of several, else ''."""
    return " †" if len(factors) > 1 and s.get("factor") in (min(factors), max(factors)) else ""


def datasets_tables(data):
    """The rule x dataset table (each cell marked † where the choice lies at the grid's edge) and the
    own-architecture table, as Markdown."""
    names = list(data["status"])
    def cell(s):
        return "failed" if "mean" not in s else f"{s['mean']:.2f} ± {s['sd']:.2f}{at_edge(s, data['factors'])}"
    rows = [[label] + [cell(data["table"][label][ds]) if ds in data["table"][label] else data["status"][ds]
                       for ds in names] + ["; ".join(f"{ds}: {data['table'][label][ds]['budget']['epochs']} ep, "
                                                     f"{data['table'][label][ds]['budget']['minutes']:.0f} min"
                                                     for ds in names if "budget" in data["table"][label].get(ds, {}))]
            for label in data["table"]]
    main = with_edge_note(format_table(["rule", *names, "budget (epochs, wall time)"], rows))
    own = format_table(["rule", "network", "epochs", "ours (test error %)", "published", "ours − published", "source"],
                       [[e, o["sizes"], o["epochs"], f"{o['mean']:.2f} ± {o['sd']:.2f}", o["published"],
                         f"{o['mean'] - o['published']:+.2f}", o["source"]] for e, o in data["own"].items()])
    return {"datasets": main, "own_architecture": own}


def datasets_compute(cfg, rng, quick):
    out = datasets_study(cfg, rng, quick)
    out["tables"] = datasets_tables(out)
    print(out["tables"]["datasets"] + ("\n\n" + out["tables"]["own_architecture"] if out["own"] else ""))
    return as_saved(out)


def log_error_axis(ax):
    """A log y axis of errors in % labelled with plain numbers (2, 3, 4 rather than 2 x 10^0), the
    intermediate ticks too while the axis spans little more than a decade."""
    import matplotlib.ticker
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.5)))


def plot_datasets(data):
    """Learning curves per dataset (rows: datasets; columns: train, validation, test error; mean over the
    seeds of the chosen setting), and the test error at the lowest-validation epoch per rule and dataset."""
    names = [ds for ds in data["status"] if data["status"][ds] == "run"]
    fig = new_figure(figsize=(16, 3.6 * len(names) + 3.5))
    grid = fig.subplots(len(names) + 1, 3, squeeze=False)
    for row, ds in zip(grid, names):
        for ax, key in zip(row, ("train", "val", "test")):
            for i, (label, per) in enumerate(data["table"].items()):
                s = per.get(ds, {})
                if "curves" in s:
                    y = s["curves"][key]
                    ax.plot(np.arange(1, len(y) + 1), y, color=f"C{i % 10}", ls="--" if i >= 10 else "-", lw=1.2,
                            label=label)
            log_error_axis(ax)
            ax.set_title(f"{ds}: {key} error (%)", fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    grid[0][2].legend(fontsize=7, ncol=2)
    ax = grid[-1][0]
    labels = list(data["table"])
    for j, ds in enumerate(names):
        vals = [data["table"][lab].get(ds, {}) for lab in labels]
        ax.bar(np.arange(len(labels)) + 0.8 * j / len(names), [v.get("mean", np.nan) for v in vals],
               0.8 / len(names), yerr=[v.get("sd", 0) for v in vals], label=ds)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - 0.4 / len(names), labels, rotation=60, fontsize=7)
    ax.set_ylabel("test error at lowest val (%)")
    ax.legend(fontsize=7)
    missing = [ds for ds, s in data["status"].items() if s != "run"]
    ax.set_title("mean ± SD over seeds" + (f"; {', '.join(missing)}: not run here" if missing else ""), fontsize=9)
    for a in grid[-1][1:]:
        a.set_axis_off()
    if data["own"]:
        own = data["own"]
        a = grid[-1][1]
        a.set_axis_on()
        x = np.arange(len(own))
        a.bar(x - 0.2, [o["mean"] for o in own.values()], 0.4, yerr=[o["sd"] for o in own.values()], label="ours")
        a.bar(x + 0.2, [o["published"] for o in own.values()], 0.4, label="published")
        a.set_xticks(x, [f"{e}\n{o['sizes']}" for e, o in own.items()], rotation=60, fontsize=6)
        a.set_title("MNIST, each rule's own architecture", fontsize=9)
        a.legend(fontsize=7)
    factors = ", ".join(f"1/{1 / f:.0f}" if f < 1 else f"{f:g}" for f in data["factors"])
    fig.suptitle(f"Every rule under one protocol: rate chosen on the validation split among x({factors}), "
                 f"{data['seeds']} seed(s), {data['epochs']} epochs"
                 + (" (QUICK: 1,000 images)" if data["quick"] else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


STUDIES["datasets"] = (datasets_compute, plot_datasets, None)


# ------------------------------------------------------------------------------------------------
# Optimizers applied to each minibatch rule's local updates.

# Each optimizer's starting rate (the protocol then tries it x1/3, x1, x3) and the rate of the target-
# propagation inverses, which take the same optimizer: scaled with the forward rate from Adam's 1e-3 / 1e-4.
OPTIMIZER_RATES = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3, "rmsprop": 1e-3}
OPTIMIZED_RULES = ("bp", "fa", "dfa", "sign", "dtp", "sdtp", "aosdtp")


def optimizers(cfg, rng, quick):
    """SGD, momentum, Adam and RMSprop (baselines.update) on the updates of every minibatch rule
    (OPTIMIZED_RULES), 784-500-10 on cfg.dataset, under the protocol of the datasets study: each
    optimizer's rate (OPTIMIZER_RATES) times 1/3, 1, 3 chosen on the validation split, 3 seeds (cfg.seeds),
    cfg.epochs epochs (default 20), test error at the lowest-validation epoch. quick: bp and dfa, the
    starting rate only, 1 seed, 2 epochs on 1,000 images."""
    rules = ("bp", "dfa") if quick else OPTIMIZED_RULES
    rows = {f"{rule} {opt}": (rule, [f"optimizer={opt}"] + ([f"lr_inv={lr / 10:g}"] if rule in TP_FAMILY else []),
                              (500,), ("lr", (lr,)))
            for rule in rules for opt, lr in OPTIMIZER_RATES.items()}
    epochs, n_seeds = cfg.epochs or (2 if quick else 20), cfg.seeds or (1 if quick else 3)
    factors = QUICK_FACTORS if quick else LR_FACTORS
    table = protocol(cfg, quick, rows, [cfg.dataset], epochs, n_seeds, factors)
    out = {"table": {label: per[cfg.dataset] for label, per in table.items()}, "rules": list(rules),
           "optimizers": list(OPTIMIZER_RATES), "rates": OPTIMIZER_RATES, "dataset": cfg.dataset, "epochs": epochs,
           "seeds": n_seeds, "quick": quick}
    def cell(s):
        return f"{s['mean']:.2f} ± {s['sd']:.2f} ({s['setting']}){at_edge(s, factors)}" if "mean" in s else "failed"
    out["tables"] = {"optimizers": with_edge_note(format_table(["rule", *OPTIMIZER_RATES], [
        [rule] + [cell(out["table"][f"{rule} {opt}"]) for opt in OPTIMIZER_RATES] for rule in rules]))}
    print(out["tables"]["optimizers"])
    return as_saved(out)


def plot_optimizers(data):
    """Validation error per epoch (mean over seeds) of each rule, optimizers as lines; and the final test
    error (at the lowest-validation epoch) per rule and optimizer."""
    rules, opts = data["rules"], data["optimizers"]
    cols = min(4, len(rules))
    rows = -(-len(rules) // cols) + 1
    fig = new_figure(figsize=(4 * cols, 3.3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, rule in zip(axes[:-1].ravel(), rules):
        for j, opt in enumerate(opts):
            s = data["table"][f"{rule} {opt}"]
            if "curves" in s:
                y = s["curves"]["val"]
                ax.plot(np.arange(1, len(y) + 1), y, color=f"C{j}", label=f"{opt} ({s['setting']})")
        log_error_axis(ax)
        ax.set_title(f"{rule}: validation error (%)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[:-1].ravel()[len(rules):]:
        ax.set_axis_off()
    ax = axes[-1][0]
    for j, opt in enumerate(opts):
        vals = [data["table"][f"{rule} {opt}"] for rule in rules]
        ax.bar(np.arange(len(rules)) + 0.2 * j - 0.3, [v.get("mean", np.nan) for v in vals], 0.2,
               yerr=[v.get("sd", 0) for v in vals], label=opt)
    ax.set_xticks(np.arange(len(rules)), rules, fontsize=8)
    ax.set_ylabel("test error at lowest val (%)")
    ax.legend(fontsize=7)
    for a in axes[-1][1:]:
        a.set_axis_off()
    fig.suptitle(f"Optimizers on each rule's local updates, 784-500-10 on {data['dataset']}, {data['seeds']} seed(s), "
                 f"{data['epochs']} epochs" + (" (QUICK: 1,000 images, no tuning)" if data["quick"] else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


STUDIES["optimizers"] = (optimizers, plot_optimizers, None)


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
            s[kind] = {"mean": float(np.mean(vals)), "sd": float(sd(vals)),
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
            ax.errorbar(i, np.mean(test), sd(test), fmt="_", color="k", ms=14,
                        capsize=4)
        folds = [v for v in r.get("folds", []) if v is not None]
        if folds:
            ax.errorbar(i + 0.25, np.mean(folds), sd(folds), fmt="D",
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
