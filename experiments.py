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


def load_data(args):
    """The dataset split for a run; --limit keeps the first N training examples."""
    data = datasets.load(args.dataset, data_dir=args.data_dir, n_valid=args.n_valid)
    if args.limit:
        data["train"] = tuple(a[:args.limit] for a in data["train"])
    return data


# ------------------------------------------------------------------------------------------------
# Baseline rules (baselines.py): minibatch training with a progress bar.

def baseline_config(args, n_in, n_out):
    """baselines.Config from the command line; unset options keep the Config defaults."""
    given = {k: getattr(args, k) for k in ("activation", "loss", "output", "optimizer", "lr", "batch", "alpha",
                                           "sigma", "lr_inv", "schedule", "phase_steps", "n_aux")
             if getattr(args, k, None) is not None}
    if args.loss == "mse" and args.output is None:
        given["output"] = "sigmoid"
    rule = baselines.RULES.get(getattr(args, "train", None))
    if getattr(args, "phase_steps", None) is None and rule is not None and rule.extra_update is not None:
        n_train = len(load_data(args)["train"][1])     # alternating schedule: one phase = one epoch
        given["phase_steps"] = -(-n_train // given.get("batch", baselines.Config.batch))
    return baselines.Config(sizes=(n_in, *args.hidden, n_out), **given)


def train_baseline(args):
    """Train one rule of baselines.py; print and return the per-epoch errors."""
    from tqdm import tqdm
    data = load_data(args)
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    n_out = int(max(y.max(), y_test.max())) + 1
    cfg = baseline_config(args, x.shape[1], n_out)
    rng = np.random.default_rng(args.seed)
    params, opt = baselines.make(args.train, cfg, rng)
    t = baselines.one_hot(y, n_out, cfg.dtype)
    result = new_result(args.train, args, {k: (list(v) if isinstance(v, tuple) else v)
                                           for k, v in vars(cfg).items()})
    print(f"{args.train} {'-'.join(map(str, cfg.sizes))} on {args.dataset}: {len(x)} train, "
          f"{len(x_val)} val, {len(x_test)} test; {cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch}")
    try:
        for epoch in range(args.epochs):
            start = time.perf_counter()
            perm = rng.permutation(len(x))
            bar = tqdm(range(0, len(x), cfg.batch), desc=f"epoch {epoch + 1}/{args.epochs}",
                       leave=False, disable=args.quiet)
            for i in bar:
                idx = perm[i:i + cfg.batch]
                L = baselines.step(args.train, params, opt, x[idx], t[idx], cfg)
                if not np.isfinite(L):
                    result["diverged"] = True
                    print(f"diverged: loss {L} in epoch {epoch + 1}; try a smaller --lr "
                          f"(now {cfg.lr:g})", file=sys.stderr)
                    return result
            seconds = time.perf_counter() - start
            err = [error_rate(baselines.predict(params, a, cfg), b)
                   for a, b in ((x, y), (x_val, y_val), (x_test, y_test))]
            log_epoch(result, *err, seconds)
    except KeyboardInterrupt:
        result["interrupted"] = True
        print(f"interrupted after {result['epochs']} epochs; saving what was computed", file=sys.stderr)
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
    p.add_argument("--limit", type=int, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result JSON here (default results/<rule>_<dataset>.json)")
    p.add_argument("--out", default="results", help="directory for results and figures")
    p.add_argument("--quick", action="store_true", help="a small, fast version (smoke tests)")
    p.add_argument("--replot", action="store_true", help="redraw a figure from saved results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
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
