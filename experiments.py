"""experiments.py -- the command line: train a rule, draw a paper figure, run a study or a benchmark.

    python experiments.py --fig 3                                  # Fig 3C from a real simulation
    python experiments.py --train bp --dataset mnist --epochs 20   # one rule, per-epoch errors, JSON
    python experiments.py --bench                                  # speed benchmarks
    python experiments.py --list                                   # every rule, figure, study, benchmark

Results go to results/ (or --out DIR): JSON or NPZ for the numbers, PNG and PDF for the figures, so that
`--fig N --replot` redraws a figure without recomputing it. Models live in sdnn.py and baselines.py, data
in datasets.py; this file owns printing, timing, saving and plotting.
"""
import argparse
import contextlib
import itertools
import json
import os
import sys
import time

import numpy as np

import baselines
import datasets

FIGURES = {}    # "3" -> fn(args): draws one paper figure
STUDIES = {}    # name -> fn(args): a comparison across rules, datasets or hyperparameters
BENCHES = {}    # name -> fn(args) -> dict of measured numbers
TRAINERS = {}   # rule -> fn(args) -> result dict (the --train JSON)


def register(table, *names):
    """Decorator: put a function in a registry under one or more names."""
    def add(fn):
        for name in names:
            table[name] = fn
        return fn
    return add


# ------------------------------------------------------------------------------------------------
# Results: one JSON per training run, figures as PNG + PDF.

def out_path(args, name):
    """results/<name> (or --out DIR/<name>), creating the directory."""
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)


def save_json(obj, path):
    """Write JSON atomically, so an interrupted run never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
    return path


def save_figure(fig, args, name):
    """Save a matplotlib figure as results/<name>.png and .pdf; return the PNG path."""
    paths = [out_path(args, f"{name}.{ext}") for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    return paths[0]


def config_json(cfg):
    """A config dataclass as JSON-ready values (tuples become lists)."""
    import dataclasses
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def new_result(rule, args, config):
    """The --train JSON: errors are fractions, one entry per epoch."""
    return {"rule": rule, "dataset": args.dataset, "hidden": list(args.hidden), "epochs": 0,
            "train_error": [], "val_error": [], "test_error": [], "seconds_per_epoch": [],
            "diverged": False, "config": config, "seed": args.seed}


def log_epoch(result, train_err, val_err, test_err, seconds):
    """Append one epoch's errors to the result and print them on one line."""
    result["epochs"] += 1
    for key, value in (("train_error", train_err), ("val_error", val_err), ("test_error", test_err),
                       ("seconds_per_epoch", seconds)):
        result[key].append(None if value is None else float(value))
    pct = lambda e: "  -  " if e is None else f"{100 * e:5.2f}%"   # noqa: E731
    print(f"epoch {result['epochs']:3d}  train {pct(train_err)}  val {pct(val_err)}  "
          f"test {pct(test_err)}  {seconds:6.1f} s", flush=True)


def summarize(result):
    """Early stopping on the validation split: the epoch with the lowest val error and its test error."""
    val = [v for v in result["val_error"] if v is not None]
    if len(val) == len(result["val_error"]) and val:
        best = int(np.argmin(val))
        result.update(best_val_epoch=best + 1, test_error_at_best_val=result["test_error"][best])
        print(f"lowest val error {100 * val[best]:.2f}% at epoch {best + 1}: "
              f"test error {100 * result['test_error'][best]:.2f}% there")
    return result


def error_rate(pred, y):
    return None if len(y) == 0 else float(np.mean(pred != y))


def split(args):
    """x, y, x_val, y_val, x_test, y_test, n_classes of --dataset; --limit keeps the first N training images."""
    data = datasets.load(args.dataset, data_dir=args.data_dir, n_valid=args.n_valid)
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    return x, y, x_val, y_val, x_test, y_test, int(max(y.max(), y_test.max())) + 1


def diverged(result, what, epoch, hint):
    """A NaN or infinite loss: flag it in the JSON, say so on stderr, stop the run."""
    result["diverged"] = True
    print(f"diverged: {what} in epoch {epoch}; {hint}", file=sys.stderr)
    return result


@contextlib.contextmanager
def keep_on_interrupt(result):
    """Ctrl-C ends the epochs but keeps the result, so what was computed is still saved."""
    try:
        yield
    except KeyboardInterrupt:
        result["interrupted"] = True
        print(f"interrupted after {result['epochs']} epochs; saving what was computed", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Baseline rules (baselines.py): minibatch training with a progress bar.

def baseline_config(args, n_in, n_out, n_train):
    """baselines.Config from the command line; unset options keep the Config defaults."""
    given = {k: getattr(args, k) for k in ("activation", "loss", "output", "optimizer", "lr", "batch", "alpha",
                                           "sigma", "lr_inv", "schedule", "phase_steps", "n_aux")
             if getattr(args, k, None) is not None}
    if args.loss == "mse" and args.output is None:
        given["output"] = "sigmoid"
    rule = baselines.RULES.get(getattr(args, "train", None))
    if getattr(args, "phase_steps", None) is None and rule is not None and rule.extra_update is not None:
        # alternating schedule: one phase = one epoch
        given["phase_steps"] = -(-n_train // given.get("batch", baselines.Config.batch))
    return rule_config(baselines.Config, args, sizes=(n_in, *args.hidden, n_out), **given)   # then --set


def train_baseline(args):
    """Train one rule of baselines.py; print and return the per-epoch errors."""
    from tqdm import tqdm
    x, y, x_val, y_val, x_test, y_test, n_out = split(args)
    cfg = baseline_config(args, x.shape[1], n_out, len(x))
    rng = np.random.default_rng(args.seed)
    params, opt = baselines.make(args.train, cfg, rng)
    t = baselines.one_hot(y, n_out, cfg.dtype)
    result = new_result(args.train, args, config_json(cfg))
    print(f"{args.train} {'-'.join(map(str, cfg.sizes))} on {args.dataset}: {len(x)} train, "
          f"{len(x_val)} val, {len(x_test)} test; {cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch}")
    with keep_on_interrupt(result):
        for epoch in range(args.epochs):
            start = time.perf_counter()
            perm = rng.permutation(len(x))
            bar = tqdm(range(0, len(x), cfg.batch), desc=f"epoch {epoch + 1}/{args.epochs}",
                       leave=False, disable=args.quiet)
            for i in bar:
                idx = perm[i:i + cfg.batch]
                L = baselines.step(args.train, params, opt, x[idx], t[idx], cfg)
                if not np.isfinite(L):
                    return diverged(result, f"loss {L}", epoch + 1, f"try a smaller --lr (now {cfg.lr:g})")
            seconds = time.perf_counter() - start
            err = [error_rate(baselines.predict(baselines.averaged(params, opt), a, cfg), b)
                   for a, b in ((x, y), (x_val, y_val), (x_test, y_test))]
            log_epoch(result, *err, seconds)
    return result


for _rule in baselines.RULES:
    TRAINERS[_rule] = train_baseline


@register(BENCHES, "bp")
def bench_bp(args):
    """Epoch time of the BP MLP 784-500-10 (batch 100, float32, Adam) and, if installed, PyTorch's."""
    n, n_in, n_hid, n_out, B = (6_000 if args.quick else 60_000), 784, 500, 10, 100
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


@register(BENCHES, "rules")
def bench_rules(args):
    """Epoch time of every baselines.py rule on Bartunov's MNIST network 784-256x5-10, tanh, Adam, batch 100.

    Synthetic inputs; the time of a 60,000-image epoch is scaled from 6,000 images (600 with --quick).
    The target-propagation rules are timed on the parallel schedule, which does both steps every minibatch
    (an upper bound for alternating, whose epochs do one or the other)."""
    n, sizes, B = (600 if args.quick else 6_000), (784, 256, 256, 256, 256, 256, 10), 100
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


def run_benches(args):
    """Run every registered benchmark (or --bench NAME ...) and save the numbers."""
    names = args.bench or sorted(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        fail(f"unknown benchmark {unknown}: choose from {sorted(BENCHES)}")
    results = {name: BENCHES[name](args) for name in names}
    save_json(results, args.json or out_path(args, "bench.json"))


# ---- segregated-dendrite network (sdnn.py) ----
# --train sdnn (--preset paper|rate|original_code), --fig 3, --fig 4, --study sdnn_fidelity, --bench sdnn.

def sdnn_config(args, n_out=10):
    """sdnn.Config of --preset with --hidden, --etas (default: the paper's rates for that network) and --set."""
    import dataclasses

    import sdnn
    if args.preset not in sdnn.PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}: choose from {sorted(sdnn.PRESETS)}")
    hidden = tuple(args.hidden)
    etas = tuple(args.etas) if args.etas else sdnn.PAPER_ETAS.get(hidden)
    if etas is None:
        raise ValueError(f"no paper learning rates for --hidden {' '.join(map(str, hidden))}: "
                         f"give {len(hidden) + 1} with --etas")
    given = dataclasses.asdict(sdnn.PRESETS[args.preset])
    given.update(hidden=hidden, etas=etas, n_out=n_out)
    return rule_config(sdnn.Config, args, **given)          # then --set KEY=VALUE (any Config field)


def sdnn_config_json(cfg):
    """The config with its derived constants (Eqs 27, 29, 34, 35)."""
    return dict(config_json(cfg), k_b=cfg.k_b, k_d=cfg.k_d, P0=cfg.P0, P1=cfg.P1)


def train_sdnn(args):
    """Online training (one example at a time) of the segregated-dendrite network; per-epoch errors.

    train_error is the online error of the forward phases during the epoch (the code's
    record_training_error): a spiking test of all training images would cost more than the epoch."""
    from tqdm import tqdm

    import sdnn
    x, y, x_val, y_val, x_test, y_test, n_out = split(args)
    if args.quick:
        x, y, x_val, y_val, x_test, y_test = x[:2000], y[:2000], x_val[:300], y_val[:300], x_test[:300], y_test[:300]
    cfg = sdnn_config(args, n_out=n_out)
    rng = np.random.default_rng(args.seed)
    net = sdnn.init_weights(x.shape[1], cfg, rng)
    state = sdnn.init_state(net)
    result = new_result("sdnn", args, sdnn_config_json(cfg))
    result.update(preset=args.preset, train_error_kind="online (forward phase, during the epoch)",
                  mean_angle_deg=[], mean_L0=[], mean_L1=[])
    mode = "spiking" if cfg.spiking else "RATE MODE (not the paper's model)"
    print(f"sdnn {'-'.join(map(str, (x.shape[1], *cfg.hidden, cfg.n_out)))} on {args.dataset}, preset "
          f"{args.preset} ({mode}): {len(x)} train, {len(x_val)} val, {len(x_test)} test; etas {cfg.etas}")

    avg = sdnn.copy_weights(net) if cfg.avg_halflife else None   # --set avg_halflife=N: test the average
    tested = net if avg is None else avg

    def test(images, labels):
        return error_rate(sdnn.predict(tested, images, cfg, rng, n_jobs=os.cpu_count() or 1), labels)

    result["initial_test_error"] = test(x_test, y_test)      # the paper tests once before training
    print(f"initial test error {100 * result['initial_test_error']:.2f}%")
    with keep_on_interrupt(result):
        for epoch in range(args.epochs):
            start = time.perf_counter()
            perm = rng.permutation(len(x))
            with tqdm(total=len(x), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                      disable=args.quiet) as bar:
                r = sdnn.train_epoch(net, state, x[perm], y[perm], sdnn.epoch_etas(cfg, epoch), rng,
                                     progress=bar.update, avg=avg, run=(epoch * len(x), args.epochs * len(x)))
            seconds = time.perf_counter() - start
            result["mean_angle_deg"].append(float(np.nanmean(r["angle"])) if np.isfinite(r["angle"]).any() else None)
            result["mean_L0"].append(float(np.mean(r["L0"])))
            result["mean_L1"].append(float(np.mean(r["L1"])))
            log_epoch(result, 1.0 - float(np.mean(r["correct"])), test(x_val, y_val), test(x_test, y_test), seconds)
        if args.retests:      # Fig 6B: the spread of re-tests of the final network, fresh spikes each time
            errs = [test(x_test, y_test) for _ in tqdm(range(args.retests), desc="re-tests", leave=False,
                                                      disable=args.quiet)]
            result.update(test_retests=errs, test_retest_mean=float(np.mean(errs)),
                          test_retest_sd=float(np.std(errs, ddof=1)) if len(errs) > 1 else 0.0)
            print(f"{len(errs)} re-tests of the final network: test error {100 * result['test_retest_mean']:.2f}% "
                  f"(SD {100 * result['test_retest_sd']:.2f})")
    return result


TRAINERS["sdnn"] = train_sdnn


@register(FIGURES, "3")
def fig3(args):
    """Fig 3C, "Illustration of a multi-compartment neural network model for deep learning": apical,
    basal and somatic potentials and spikes of hidden units of 784-500-10 (PAPER preset) for one MNIST
    example, forward then target phase; settle time, averaging windows and plateaus marked.
    Illustrative only (the paper reports no statistic). The network first learns from 300 examples
    (none with --quick) so that the target phase visibly moves the apical potentials."""
    import sdnn
    path = out_path(args, "fig3.npz")
    if not args.replot:
        x, y = split(args)[:2]
        cfg = sdnn_config(argparse.Namespace(preset="paper", hidden=[500], etas=None))
        rng = np.random.default_rng(args.seed)
        net = sdnn.init_weights(x.shape[1], cfg, rng)
        state = sdnn.init_state(net)
        n_warm = 0 if args.quick else 300
        sdnn.train_epoch(net, state, x[:n_warm], y[:n_warm], cfg, rng)
        info = sdnn.train_example(net, state, x[n_warm], y[n_warm], cfg, rng, record=True)
        units = np.argsort(np.abs(info["alpha_t"][0] - info["alpha_f"][0]))[-3:][::-1]   # largest plateau change
        np.savez(path, f=info["trace_f"][0][:, :, units], t=info["trace_t"][0][:, :, units], units=units,
                 T=np.array(info["T"]),
                 alpha_f=info["alpha_f"][0][units], alpha_t=info["alpha_t"][0][units],
                 Va_f=info["V_a_f"][0][units], Va_t=info["V_a_t"][0][units], label=y[n_warm],
                 t_settle=cfg.t_settle, k_b=cfg.k_b)
        print(f"simulated one training example (label {y[n_warm]}) after {n_warm} examples; wrote {path}")
    plot_fig3(args, path)


def plot_fig3(args, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = np.load(path)
    T_f, T_t = (int(v) for v in d["T"])
    tr = np.concatenate([d["f"], d["t"]])                   # (T_f + T_t, 4, units): V_b, V_a, V, spikes
    time_ms = np.arange(T_f + T_t)
    n_units = tr.shape[2]
    fig, axes = plt.subplots(n_units, 1, figsize=(9, 2.6 * n_units), sharex=True)
    for u, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(time_ms, tr[:, 1, u], color="tab:red", lw=1, label="apical $V^{0a}$")
        ax.plot(time_ms, tr[:, 0, u], color="tab:blue", lw=1, label="basal $V^{0b}$")
        ax.plot(time_ms, tr[:, 2, u], color="k", lw=1, label="soma $V^0$")
        spikes = np.flatnonzero(tr[:, 3, u])
        top = ax.get_ylim()[1]
        ax.plot(spikes, np.full(len(spikes), top), "|", color="k", ms=8, label="spikes")
        for start, T, va, alpha, name in ((0, T_f, d["Va_f"][u], d["alpha_f"][u], "f"),
                                          (T_f, T_t, d["Va_t"][u], d["alpha_t"][u], "t")):
            ax.axvspan(start, start + int(d["t_settle"]), color="0.9", zorder=0)
            ax.hlines(va, start + int(d["t_settle"]), start + T, color="tab:red", ls="--", lw=1.5)
            ax.text(start + T - 1, va, f" $\\alpha^{name}$ = $\\sigma$({va:.2f}) = {alpha:.3f}",
                    color="tab:red", ha="right", va="bottom", fontsize=8)
        ax.axvline(T_f, color="0.4", lw=1)
        ax.set_ylabel(f"unit {int(d['units'][u])}\nvoltage")
    axes = np.atleast_1d(axes)
    axes[0].legend(loc="upper left", fontsize=7, ncol=4)
    axes[0].set_title(f"Fig 3C (real simulation, PAPER preset, label {int(d['label'])}): forward phase | "
                      f"target phase; gray = {int(d['t_settle'])} ms settle, dashed = mean apical "
                      f"potential over the averaging window", fontsize=9)
    axes[-1].set_xlabel("time (ms)")
    print(f"wrote {save_figure(fig, args, 'fig3')}")


@register(FIGURES, "4")
def fig4(args):
    """Fig 4B, "Illustration of network phases for learning": phase lengths 50 ms + Wald(2, 1), as the
    code samples them (integer truncation) and continuous. Paper: phases usually last 50-60 ms."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import sdnn
    cfg, rng = sdnn.PAPER, np.random.default_rng(args.seed)
    n = 20_000 if args.quick else 1_000_000
    trunc = sdnn.phase_lengths(n, cfg, rng)
    cont = sdnn.phase_lengths(n, cfg, rng, discrete=False)
    stats = {"n": n, "mean_truncated_ms": float(trunc.mean()), "mean_continuous_ms": float(cont.mean()),
             "fraction_truncated_50_to_60": float(np.mean(trunc < 60)),
             "fraction_truncated_ge_60": float(np.mean(trunc >= 60)),
             "quantiles_continuous_ms": {q: float(np.quantile(cont, q)) for q in (0.5, 0.9, 0.99)}}
    save_json(stats, out_path(args, "fig4.json"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.arange(50, 71, 0.25)
    ax.hist(cont, bins=bins, density=True, alpha=0.5, label="50 + Wald(2, 1), continuous")
    ax.hist(trunc, bins=np.arange(50, 71) - 0.5 + 0.5, density=True, histtype="step", lw=2,
            label="50 + int(Wald(2, 1)) (the code; used here)")
    ax.set_xlabel("phase length (ms)")
    ax.set_ylabel("density")
    ax.set_title(f"Fig 4B: mean {trunc.mean():.2f} ms (truncated), {cont.mean():.2f} ms (continuous); "
                 f"{100 * np.mean(trunc >= 60):.1f} % >= 60 ms", fontsize=9)
    ax.legend(fontsize=8)
    print(json.dumps(stats, indent=1))
    print(f"wrote {save_figure(fig, args, 'fig4')}")


@register(STUDIES, "sdnn_fidelity")
def study_sdnn_fidelity(args):
    """Fidelity to the original code's learning curves (784-500-10, etas 0.21/0.21, all 60k images):
    ORIGINAL_CODE spiking: test error on 1,000 random test images after 3k/6k/9k/12k examples
    (original, seed 0: 38.7 / 20.0 / 19.9 / 17.2 %; seed 1 after 3k: 52.5 %); RATE: full test after
    20k/60k/120k examples (original: 7.75 / 6.32 / 5.04 %). Seeds --seed .. --seed + 2 (1 with --quick)."""
    import sdnn
    data = datasets.load(args.dataset, data_dir=args.data_dir, n_valid=0)
    (x, y), (x_test, y_test) = data["train"], data["test"]
    seeds = range(args.seed, args.seed + (1 if args.quick else 3))
    out = {"original_code_spiking": {"checkpoints": [3000, 6000, 9000, 12000],
                                     "original_seed0": [38.7, 20.0, 19.9, 17.2], "runs": {}},
           "rate": {"checkpoints": [20000, 60000, 120000], "original_seed0": [7.75, 6.32, 5.04], "runs": {}}}
    for key, cfg in (("original_code_spiking", sdnn.ORIGINAL_CODE), ("rate", sdnn.RATE)):
        part = out[key]
        checkpoints = [c // 10 for c in part["checkpoints"]] if args.quick else part["checkpoints"]
        for seed in seeds:
            rng = np.random.default_rng(seed)
            net = sdnn.init_weights(x.shape[1], cfg, rng)
            state = sdnn.init_state(net)
            order = np.concatenate([rng.permutation(len(x)) for _ in range(-(-checkpoints[-1] // len(x)))])
            errs, done = [], 0
            for c in checkpoints:
                sdnn.train_epoch(net, state, x[order[done:c]], y[order[done:c]], cfg, rng)
                done = c
                idx = rng.choice(len(x_test), 1000, replace=False) if cfg.spiking else np.arange(len(x_test))
                pred = sdnn.predict(net, x_test[idx], cfg, rng, os.cpu_count() or 1)
                errs.append(100 * error_rate(pred, y_test[idx]))
                print(f"{key} seed {seed}: {c} examples, test error {errs[-1]:.2f} %", flush=True)
            part["runs"][str(seed)] = errs
        runs = np.array(list(part["runs"].values()))
        part["mean"], part["sd"] = runs.mean(0).tolist(), runs.std(0).tolist()
        print(f"{key}: mean {np.round(part['mean'], 2)} sd {np.round(part['sd'], 2)} vs original "
              f"{part['original_seed0']}")
    print(f"wrote {save_json(out, args.json or out_path(args, 'sdnn_fidelity.json'))}")


# The original code's spiking mode, ms per training example and per 250-ms test example, measured on one
# core of this machine kind (spec §5, HEAD a41ebc8).
ORIGINAL_CODE_MS = {"784-10": (26, 54), "784-500-10": (58, 124), "784-500-100-10": (91, 191)}


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


@register(BENCHES, "sdnn")
def bench_sdnn(args):
    """Speed of sdnn.py: PAPER preset on one core (ms per training example, per 500-ms test example,
    training examples/s, synaptic events/s) for 784-10, 784-500-10, 784-500-100-10 on MNIST images and
    3072-500-10 on synthetic CIFAR-like images; the RATE preset's epoch; test throughput on all cores.
    Times are CPU time of this process, median over chunks (the other cores may be busy)."""
    import dataclasses

    import sdnn
    rng = np.random.default_rng(0)
    try:
        mnist, mnist_y = (a[:2000] for a in datasets.load("mnist", data_dir=args.data_dir)["train"])
    except (datasets.DataError, OSError):
        mnist = np.where(rng.random((2000, 784)) < 0.19, rng.random((2000, 784)), 0).astype(np.float32)
        mnist_y = rng.integers(0, 10, len(mnist))
        print("MNIST not found: synthetic MNIST-like inputs (19 % non-zero pixels), random labels")
    n_train, n_test = (60, 10) if args.quick else (400, 60)
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
            lambda a, b: counts.append(sdnn.train_epoch(net, state, X[a:b], y[a:b], cfg, rng)["n_spikes"]),  # noqa: B023
            20, 20 + n_train)
        sizes = (X.shape[1],) + hidden + (10,)
        fan_out = list(sizes[1:]) + [sum(hidden)]                       # input, hidden..., output (apical)
        spikes = np.sum(counts, axis=0) / n_train
        events = float(np.dot(spikes, fan_out))
        test_s = _median_cpu_per_item(
            lambda a, b: [sdnn.test_example(net, x, cfg, rng) for x in X[a:b]], 0, n_test)  # noqa: B023
        out[name] = {"ms_per_train_example": 1e3 * train_s, "ms_per_test_example": 1e3 * test_s,
                     "train_examples_per_s": 1 / train_s, "synaptic_events_per_s": events / train_s,
                     "spikes_per_train_example": spikes.tolist()}
        print(f"PAPER {name:15s}: {1e3 * train_s:6.3f} ms / train example ({1 / train_s:6.0f} /s), "
              f"{1e3 * test_s:6.3f} ms / {cfg.test_ms}-ms test example, {events / train_s / 1e6:6.1f} M "
              f"synaptic events / s", flush=True)
        if name in ORIGINAL_CODE_MS:   # spec §5: the original code, one core of this machine kind
            tr, te = ORIGINAL_CODE_MS[name]
            up = [tr / (1e3 * train_s), (te / 250) / (1e3 * test_s / cfg.test_ms)]   # per simulated test ms
            out[name]["speedup_vs_original"] = up
            print(f"    original code: {tr} ms / train example, {te} ms / 250-ms test example: "
                  f"x{up[0]:.0f} faster training, x{up[1]:.0f} faster per simulated test ms", flush=True)
        if name == "784-500-10":   # the NumPy twin in the same minutes: a ratio the VM's speed drift cancels
            n_twin = 2 if args.quick else 10
            twin_s = _median_cpu_per_item(
                lambda a, b: sdnn.train_epoch(net, state, X[a:b], y[a:b], cfg, rng, jit=False),  # noqa: B023
                0, n_twin, 2)
            out[name]["numpy_twin_ms_per_train_example"] = 1e3 * twin_s
            print(f"    NumPy twin (same maths, per-step NumPy like the original code): {1e3 * twin_s:.1f} ms / "
                  f"train example, x{twin_s / train_s:.0f} the Numba kernel", flush=True)
    # test throughput on all cores (wall clock), 784-500-10
    cfg = sdnn.PAPER
    net = sdnn.init_weights(784, cfg, rng)
    n_par = 40 if args.quick else 400
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
    n_rate = 6000 if args.quick else 20000
    Xr = np.resize(mnist, (n_rate, 784))
    yr = np.resize(mnist_y, n_rate)
    sdnn.train_epoch(net, None, Xr[:100], yr[:100], cfg, rng)
    start = time.process_time()
    sdnn.train_epoch(net, None, Xr, yr, cfg, rng)
    out["rate_784-500-10_s_per_60k_epoch"] = (time.process_time() - start) * 60_000 / n_rate
    print(f"RATE 784-500-10: {out['rate_784-500-10_s_per_60k_epoch']:.2f} s per 60,000-example epoch")
    return out


# ---- Krotov-Hopfield, equilibrium propagation, microcircuits (baselines.py) ----
# --train kh | eqprop | microcircuit with their own trainers; rule settings through --set KEY=VALUE
# (the fields of baselines.KHConfig, EqPropConfig, MicrocircuitConfig); --fig kh-fields.

def rule_config(cls, args, **given):
    """cls(**given), then every --set KEY=VALUE, each VALUE read as the type of the field's default
    (tuples comma-separated: --set alphas=0.1,0.05)."""
    import dataclasses
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    for item in getattr(args, "set", None) or []:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
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
    return cls(**given)


def kh_learn_synapses(W, x, cfg, rng, args, result=None):
    """cfg.epochs_unsup epochs of the unsupervised rule on x, eps annealed linearly; W in place."""
    from tqdm import tqdm
    for epoch in range(cfg.epochs_unsup):
        start, eps, perm = time.perf_counter(), baselines.kh_eps(epoch, cfg), rng.permutation(len(x))
        for i in tqdm(range(0, len(x), cfg.batch_unsup), desc=f"unsupervised {epoch + 1}/{cfg.epochs_unsup}",
                      leave=False, disable=args.quiet):
            baselines.kh_step(W, x[perm[i:i + cfg.batch_unsup]], eps, cfg)
        seconds = time.perf_counter() - start
        norms = np.sum(np.abs(W.astype(np.float64)) ** cfg.p, axis=1) ** (1 / cfg.p)
        if result is not None:
            result["unsup_seconds_per_epoch"].append(seconds)
            result["unsup_median_row_norm"].append(float(np.median(norms)))
        print(f"unsupervised epoch {epoch + 1:3d}  eps {eps:.2e}  median ||W_mu||_p {np.median(norms):.3f}  "
              f"{seconds:6.1f} s", flush=True)
    return W


def train_kh(args):
    """Krotov-Hopfield: the hidden synapses learn without labels for epochs_unsup epochs (--set
    epochs_unsup=N), then the top layer S learns for --epochs epochs with Adam; per-epoch errors are
    those of the top-layer stage. The synapses are saved next to the JSON (.npz) for --fig kh-fields
    and --synapses (tuning the top layer without relearning them)."""
    import dataclasses

    from tqdm import tqdm
    x, y, x_val, y_val, x_test, y_test, n_out = split(args)
    if len(args.hidden) != 1:
        raise ValueError(f"--hidden {' '.join(map(str, args.hidden))}: kh has one hidden layer "
                         "(the paper's MNIST network: --hidden 2000)")
    given = {"n_hidden": args.hidden[0]}
    given.update({k: getattr(args, k) for k in ("lr", "batch") if getattr(args, k) is not None})
    cfg = rule_config(baselines.KHConfig, args, **given)
    rng = np.random.default_rng(args.seed)
    x, x_val, x_test = (a.astype(cfg.dtype) for a in (x, x_val, x_test))
    W = baselines.kh_init(x.shape[1], cfg, rng)
    if args.synapses:                                  # continue from saved synapses (a kh .npz)
        W = np.load(args.synapses)["W"].astype(cfg.dtype)
        if W.shape != (cfg.n_hidden, x.shape[1]):
            raise ValueError(f"--synapses {args.synapses}: W has shape {W.shape}, the network needs "
                             f"{(cfg.n_hidden, x.shape[1])} (--hidden {W.shape[0]}?)")
    result = new_result("kh", args, config_json(cfg))
    result.update(unsup_seconds_per_epoch=[], unsup_median_row_norm=[], synapses_from=args.synapses)
    print(f"kh {x.shape[1]}-{cfg.n_hidden}-{n_out} on {args.dataset}: {len(x)} train, {len(x_val)} val, "
          f"{len(x_test)} test; p {cfg.p:g}, k {cfg.k}, Delta {cfg.Delta:g}, eps0 {cfg.eps0:g} over "
          f"{cfg.epochs_unsup} unsupervised epochs; top layer n {cfg.n:g}, beta {cfg.beta:g}, m {cfg.m}, "
          f"Adam lr {cfg.lr:g}")
    with keep_on_interrupt(result):
        kh_learn_synapses(W, x, cfg, rng, args, result)
        np.savez_compressed(os.path.splitext(args.json or out_path(args, f"kh_{args.dataset}.json"))[0]
                            + ".npz", W=W)
        start = time.perf_counter()
        h, h_val, h_test = (baselines.kh_hidden(W, a, cfg) for a in (x, x_val, x_test))
        result["hidden_seconds"] = time.perf_counter() - start
        S = baselines.kh_top_init(n_out, cfg)
        top, adam = {"W": [S], "b": []}, baselines.Config(sizes=(cfg.n_hidden, n_out), lr=cfg.lr)
        opt = baselines.init_optimizer(top)
        t = 2 * baselines.one_hot(y, n_out, cfg.dtype) - 1                       # targets in {-1, +1}
        for epoch in range(args.epochs):
            start, perm = time.perf_counter(), rng.permutation(len(x))
            if cfg.anneal_top:
                adam = dataclasses.replace(adam, lr=cfg.lr * (1 - epoch / args.epochs))
            for i in tqdm(range(0, len(x), cfg.batch), desc=f"top layer {epoch + 1}/{args.epochs}",
                          leave=False, disable=args.quiet):
                idx = perm[i:i + cfg.batch]
                C, dS = baselines.kh_top_loss(S, h[idx], t[idx], cfg)
                if not np.isfinite(C):
                    return diverged(result, f"top-layer loss {C}", epoch + 1, f"try a smaller --lr (now {cfg.lr:g})")
                baselines.update(top, {"W": [dS], "b": []}, opt, adam)
            seconds = time.perf_counter() - start
            log_epoch(result, *(error_rate(baselines.kh_predict(S, a), b)
                                 for a, b in ((h, y), (h_val, y_val), (h_test, y_test))), seconds)
    return result


def train_eqprop(args):
    """Equilibrium propagation with persistent particles: each training example keeps its free-phase
    state from one epoch to the next. Defaults: the reference code's Table 2 row for --hidden (500;
    500 500; 500 500 500), converted to the paper's cost C = 1/2 ||y - d||^2 (beta and alphas doubled).
    train_error is the online error of those free phases during the epoch (as the reference code); val
    and test start from s = 0 and relax for n_free_eval iterations."""
    from tqdm import tqdm
    x, y, x_val, y_val, x_test, y_test, n_out = split(args)
    if args.lr is not None:
        raise ValueError("--lr: eqprop has one learning rate per layer; use --set alphas=0.1,0.05")
    hidden = tuple(args.hidden)
    given = dict(sizes=(x.shape[1], *hidden, n_out), **baselines.EQPROP_TABLE2.get(hidden, {}))
    if args.batch is not None:
        given["batch"] = args.batch
    cfg = rule_config(baselines.EqPropConfig, args, **given)
    rng = np.random.default_rng(args.seed)
    params = baselines.eqprop_init(cfg, rng)
    particles = baselines.eqprop_zero_state(params, len(x), cfg.dtype)
    d = baselines.one_hot(y, n_out, cfg.dtype)
    result = new_result("eqprop", args, config_json(cfg))
    result["train_error_kind"] = "online (free phase of the persistent particles, during the epoch)"
    print(f"eqprop {'-'.join(map(str, cfg.sizes))} on {args.dataset}: {len(x)} train, {len(x_val)} val, "
          f"{len(x_test)} test; {cfg.n_free} free / {cfg.n_clamped} clamped iterations, epsilon "
          f"{cfg.epsilon:g}, beta {cfg.beta:g}{' (random sign)' if cfg.random_sign else ''}, alphas {cfg.alphas}")
    with keep_on_interrupt(result):
        for epoch in range(args.epochs):
            start, perm, wrong = time.perf_counter(), rng.permutation(len(x)), 0
            for i in tqdm(range(0, len(x), cfg.batch), desc=f"epoch {epoch + 1}/{args.epochs}",
                          leave=False, disable=args.quiet):
                idx = perm[i:i + cfg.batch]
                s_free, C = baselines.eqprop_step(params, x[idx], d[idx], [p[idx] for p in particles], cfg, rng)
                if not np.isfinite(C):
                    return diverged(result, f"cost {C}", epoch + 1, "try smaller --set alphas=...")
                for p, s in zip(particles, s_free):
                    p[idx] = s                                                   # persistent particles
                wrong += int(np.sum(s_free[-1].argmax(axis=1) != y[idx]))
            seconds = time.perf_counter() - start
            if not all(np.isfinite(W).all() for W in params["W"]):     # clipped states hide a blow-up
                return diverged(result, "weights not finite", epoch + 1, "try smaller --set alphas=...")
            log_epoch(result, wrong / len(x), *(error_rate(baselines.eqprop_predict(params, a, cfg), b)
                                                for a, b in ((x_val, y_val), (x_test, y_test))), seconds)
    return result


def train_microcircuit(args):
    """Dendritic cortical microcircuit, steady-state version (paper 3.4), from the self-predicting state.
    --lr sets every bottom-up learning rate; --set etas=a,b,c sets them per layer."""
    from tqdm import tqdm
    x, y, x_val, y_val, x_test, y_test, n_out = split(args)
    given = {"sizes": (x.shape[1], *args.hidden, n_out)}
    if args.lr is not None:
        given["etas"] = (args.lr,) * (len(args.hidden) + 1)
    if args.batch is not None:
        given["batch"] = args.batch
    cfg = rule_config(baselines.MicrocircuitConfig, args, **given)
    rng = np.random.default_rng(args.seed)
    params = baselines.microcircuit_init(cfg, rng)
    u_trgt, r_trgt = baselines.microcircuit_targets(y, n_out, cfg)
    result = new_result("microcircuit", args, config_json(cfg))
    print(f"microcircuit {'-'.join(map(str, cfg.sizes))} on {args.dataset}: {len(x)} train, {len(x_val)} val, "
          f"{len(x_test)} test; etas {cfg.etas}, t_half {cfg.t_half}, B_gain {cfg.B_gain}, batch {cfg.batch}, "
          f"lambda_out {cfg.lambda_out:.3f}, lambda_I {cfg.lambda_I:.3f}, lambda_A {cfg.lambda_A:.3f}")
    with keep_on_interrupt(result):
        for epoch in range(args.epochs):
            start, perm = time.perf_counter(), rng.permutation(len(x))
            for i in tqdm(range(0, len(x), cfg.batch), desc=f"epoch {epoch + 1}/{args.epochs}",
                          leave=False, disable=args.quiet):
                idx = perm[i:i + cfg.batch]
                L = baselines.microcircuit_step(params, x[idx], u_trgt[idx], r_trgt[idx], cfg)
                if not np.isfinite(L):
                    return diverged(result, f"loss {L}", epoch + 1, "try a smaller --lr or --set etas=...")
            seconds = time.perf_counter() - start
            if not all(np.isfinite(W).all() for W in params["W"]):     # saturated rates hide a blow-up
                return diverged(result, "weights not finite", epoch + 1, "try a smaller --lr or --set etas=...")
            log_epoch(result, *(error_rate(baselines.microcircuit_predict(params, a, cfg), b)
                                for a, b in ((x, y), (x_val, y_val), (x_test, y_test))), seconds)
    return result


TRAINERS.update(kh=train_kh, eqprop=train_eqprop, microcircuit=train_microcircuit)


@register(FIGURES, "kh-fields")
def fig_kh_fields(args):
    """Receptive fields of Krotov-Hopfield hidden units (Krotov & Hopfield 2019, Fig. 3 style; the demo
    notebook's draw_weights): each unit's synapses as a 28x28 image, red positive, blue negative.
    Trains the demo setting (100 units, p = 2, k = 2, Delta 0.4, eps0 0.02; the notebook runs 200
    epochs) for --epochs epochs, with --set overrides; --quick: 1 epoch on 5,000 images. --replot
    redraws results/kh-fields.npz, which may also be the .npz that a --train kh run saves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = out_path(args, "kh-fields.npz")
    if not args.replot:
        x = split(args)[0]
        demo = dict(n_hidden=100, p=2.0, k=2, Delta=0.4, eps0=2e-2, batch_unsup=100, dtype="float64",
                    epochs_unsup=1 if args.quick else args.epochs)
        cfg = rule_config(baselines.KHConfig, args, **demo)
        x = x[:5000] if args.quick else x
        rng = np.random.default_rng(args.seed)
        W = kh_learn_synapses(baselines.kh_init(x.shape[1], cfg, rng), x, cfg, rng, args)
        np.savez_compressed(path, W=W, config=json.dumps(config_json(cfg)))
    W = np.load(path)["W"]
    side = int(np.sqrt(W.shape[1]))
    n = min(len(W), 100)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.zeros((rows * side, cols * side))
    for j in range(n):
        r, c = divmod(j, cols)
        grid[r * side:(r + 1) * side, c * side:(c + 1) * side] = W[j].reshape(side, side)
    vmax = np.abs(grid).max()
    fig, ax = plt.subplots(figsize=(7, 7 * rows / cols))
    im = ax.imshow(grid, cmap="bwr", vmin=-vmax, vmax=vmax)
    ax.set_axis_off()
    ax.set_title(f"Krotov-Hopfield receptive fields: first {n} of {len(W)} hidden units", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    print(f"wrote {save_figure(fig, args, 'kh-fields')}")


# ------------------------------------------------------------------------------------------------
# Command line.

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--train", metavar="RULE", help="train one rule (see --list)")
    what.add_argument("--fig", metavar="N", help="reproduce a paper figure (see --list)")
    what.add_argument("--study", metavar="NAME", help="run a study (see --list)")
    what.add_argument("--bench", nargs="*", metavar="NAME", help="speed benchmarks (all if no NAME)")
    what.add_argument("--list", action="store_true", help="list rules, figures, studies, benchmarks")
    p.add_argument("--dataset", default="mnist", help=f"one of {datasets.DATASETS}")
    p.add_argument("--data-dir", help="dataset directory (default: $SDNN_DATA, then a per-user cache)")
    p.add_argument("--n-valid", type=int, help="validation images carved from the end of the training set")
    p.add_argument("--hidden", type=int, nargs="*", default=[500], help="hidden layer sizes, e.g. 500 100")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, help="learning rate (default: the rule's)")
    p.add_argument("--batch", type=int, help="minibatch size (default 100)")
    p.add_argument("--optimizer", choices=baselines.OPTIMIZERS)
    p.add_argument("--activation", choices=baselines.ACTIVATIONS)
    p.add_argument("--loss", choices=tuple(baselines.OUTPUTS))
    p.add_argument("--output", help="output units: softmax (ce), sigmoid or linear (mse)")
    p.add_argument("--alpha", type=float, help="tp/dtp: step size of the top hidden target (default 0.3277)")
    p.add_argument("--sigma", type=float, help="tp family: noise std for training the inverses (default 0.3598)")
    p.add_argument("--lr-inv", type=float, help="tp family: learning rate of the inverses (default 1e-4)")
    p.add_argument("--schedule", choices=("alternating", "parallel"), help="tp family (default alternating)")
    p.add_argument("--phase-steps", type=int, help="tp family: minibatches per alternating phase (default: "
                   "one epoch)")
    p.add_argument("--n-aux", type=int, help="aosdtp: auxiliary random output units (default 512)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="set a field of the rule's config, e.g. "
                   "--set beta2=0.99 eps=1e-4 (baselines.Config, sdnn.Config, KHConfig, EqPropConfig, "
                   "MicrocircuitConfig)")
    p.add_argument("--synapses", help="kh: start from the synapses W of this .npz (saved by --train kh); "
                   "with --set epochs_unsup=0 only the top layer learns")
    p.add_argument("--limit", type=int, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result JSON here (default results/<rule>_<dataset>.json)")
    p.add_argument("--out", default="results", help="directory for results and figures")
    p.add_argument("--quick", action="store_true", help="a small, fast version (smoke tests)")
    p.add_argument("--replot", action="store_true", help="redraw a figure from saved results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--preset", default="paper", help="sdnn: paper, rate or original_code (sdnn.PRESETS)")
    p.add_argument("--etas", type=float, nargs="+", help="sdnn: learning rates, first hidden .. output "
                   "(default: the paper's for --hidden)")
    p.add_argument("--retests", type=int, default=0, help="sdnn: test the final network N more times on the "
                   "test set, fresh spikes each time, and report the mean and SD (the paper's Fig 6B: 20)")
    args = p.parse_args(argv)
    if args.retests < 0:
        p.error(f"--retests {args.retests}: must be 0 (none) or a positive number of re-tests")
    for name, value in (("--epochs", args.epochs), ("--limit", args.limit), ("--batch", args.batch)):
        if value is not None and value <= 0:
            p.error(f"{name} {value}: must be a positive integer")
    if any(h <= 0 for h in args.hidden):
        p.error(f"--hidden {' '.join(map(str, args.hidden))}: every hidden size must be positive")
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr {args.lr}: the learning rate must be positive (e.g. --lr 1e-3)")
    return args


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def listing():
    return "\n".join([f"rules (--train):   {' '.join(sorted(TRAINERS))}",
                      f"figures (--fig):   {' '.join(sorted(FIGURES, key=str))}",
                      f"studies (--study): {' '.join(sorted(STUDIES)) or '(none yet)'}",
                      f"benchmarks (--bench): {' '.join(sorted(BENCHES))}",
                      f"datasets (--dataset): {' '.join(datasets.DATASETS)}"])


def main(argv=None):
    args = parse(argv)
    if args.list:
        print(listing())
        return
    try:
        if args.train is not None:
            if args.train not in TRAINERS:
                fail(f"unknown rule {args.train!r}; valid rules: {' '.join(sorted(TRAINERS))}")
            result = summarize(TRAINERS[args.train](args))
            path = save_json(result, args.json or out_path(args, f"{args.train}_{args.dataset}.json"))
            print(f"wrote {path}")
        elif args.fig is not None:
            if args.fig not in FIGURES:
                fail(f"unknown figure {args.fig!r}; valid figures: {' '.join(sorted(FIGURES, key=str))}")
            FIGURES[args.fig](args)
        elif args.study is not None:
            if args.study not in STUDIES:
                fail(f"unknown study {args.study!r}; valid studies: {' '.join(sorted(STUDIES)) or '(none yet)'}")
            STUDIES[args.study](args)
        else:
            run_benches(args)
    except (ValueError, datasets.DataError) as err:
        fail(str(err))


if __name__ == "__main__":
    main()
