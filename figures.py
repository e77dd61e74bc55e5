"""figures.py -- the paper's figures and other illustrations: compute the numbers, then draw them.

    compute, plot, model = FIGURES["3"]
    data = compute(FigConfig(model=model), np.random.default_rng(0), quick=False)
    save_data(data, "results/fig3", meta)      # results/fig3.json: the numbers, arrays included, and meta
    fig = plot(load_data("results/fig3"))      # --replot starts here, without recomputing
    save_figure(fig, "results/fig3")           # results/fig3.png + results/fig3.pdf

A compute function returns a dict of arrays and JSON-able values and writes no files; a plot function
reads only that dict and returns a matplotlib Figure. Models live in sdnn.py and baselines.py.
"""
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

import baselines
import datasets
import sdnn


@dataclass(frozen=True)
class FigConfig:
    """What a figure or study computes from: the command line's data options and the model's config."""
    dataset: str = "mnist"
    data_dir: str | None = None     # None: datasets.load's default ($SDNN_DATA, then a cache)
    epochs: int | None = None       # None: the figure's own default
    seed: int = 0                   # --seed; a study of several seeds runs seed, seed + 1, ...
    model: object = None            # the figure's model config (sdnn.Config, baselines.KHConfig, ...), --set applied
    preset: str | None = None       # training figures: --preset of their runs (None: the figure's own)
    set: tuple = ()                 # training figures: --set items added to every run
    seeds: int | None = None        # training figures: seeds per condition (None: 2, or 1 with quick)
    runs: str = "results/runs"      # training figures: where their runs' JSONs and checkpoints live
    workers: int | None = None      # training figures: runs at once (None: one per core)
    scheduler: str | None = None    # runs on this Dask scheduler's workers (tcp://HOST:PORT) instead of here
    storage: str | None = None      # --study robustness: Optuna's database URL (None: a journal file)
    folds: int | None = None        # --study robustness: cross-validate the best configurations on K folds


# The demo notebook of Krotov & Hopfield (2019), DimaKrotov/Biological_Learning: 100 units, p = 2, k = 2,
# Delta 0.4, eps0 0.02, minibatch 100. The notebook runs 200 epochs; 10 here (--epochs N for more).
KH_DEMO = baselines.KHConfig(n_hidden=100, p=2.0, k=2, Delta=0.4, eps0=2e-2, batch_unsup=100, dtype="float64",
                             epochs_unsup=10)


# ------------------------------------------------------------------------------------------------
# Saving and loading: numbers as NPZ + JSON (so that --replot need not recompute), figures as PNG + PDF.

def setup_matplotlib():
    """The one matplotlib set-up: the Agg backend (no display) and TrueType (Type 42) fonts in PDF/PS
    files, which stay editable text in a journal's tools (Type 3 fonts do not). matplotlib is imported
    here, not at the top: training runs import this module for atomic_write and need no plotting."""
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42})


def new_figure(**kw):
    """A Figure outside pyplot: nothing to close, no global figure list."""
    setup_matplotlib()
    from matplotlib.figure import Figure
    return Figure(**kw)


def atomic_write(path, write, mode="w"):
    """write(f) into a temporary file unique to this process, then rename it over `path`: an
    interrupted run never leaves half a file, and two runs never write into the same temporary."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_figure(fig, stem):
    """Save fig as stem.png (150 dpi) and stem.pdf; return both paths."""
    setup_matplotlib()
    return [atomic_write(f"{stem}.{ext}", lambda f, ext=ext: fig.savefig(f, format=ext, dpi=150, bbox_inches="tight"),
                         "wb") for ext in ("png", "pdf")]


def _jsonable(obj):
    """JSON for what json does not know: config dataclasses and NumPy scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} cannot be saved as JSON: put arrays at the top level of the data "
                    "dict (saved with their dtype and shape), everything else as numbers, strings, lists or dicts")


def save_data(data, stem, meta):
    """`data` and `meta` (the config, the command) -> stem.json, one text file: top-level arrays are
    kept as {dtype, shape, values} (JSON numbers hold a float32 or float64 exactly). Returns the path."""
    arrays = {k: {"dtype": v.dtype.str, "shape": v.shape, "values": v.ravel().tolist()}
              for k, v in data.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in data.items() if k not in arrays}
    text = json.dumps({"meta": meta, "data": rest, "arrays": arrays}, default=_jsonable)
    return atomic_write(f"{stem}.json", lambda f: f.write(text))


def load_data(stem):
    """The dict that save_data saved under `stem`, arrays with their dtype and shape."""
    if not os.path.exists(f"{stem}.json"):
        raise FileNotFoundError(f"{stem}.json not found: no saved numbers to redraw; run without --replot first")
    with open(f"{stem}.json") as f:
        saved = json.load(f)
    data = saved["data"]
    data.update({k: np.array(a["values"], np.dtype(a["dtype"])).reshape(a["shape"]) for k, a in saved["arrays"].items()})
    return data


def _preset_name(model):
    """'PAPER' for sdnn.PAPER, ... ; 'custom' for a config that is none of the presets."""
    return next((name.upper() for name, c in sdnn.PRESETS.items() if c == model), "custom")


# ------------------------------------------------------------------------------------------------
# Fig 3C: one training example, simulated.

def fig3(cfg, rng, quick):
    """Fig 3C, "Illustration of a multi-compartment neural network model for deep learning": apical,
    basal and somatic potentials and spikes of three hidden units of 784-500-10 (cfg.model, default
    PAPER) for one MNIST example, forward then target phase, with the settle time, the averaging
    windows and the plateaus alpha = sigma(mean apical potential) (Eqs 21-22).
    Paper: illustrative only, no statistic. The network first learns from 300 training examples (none
    with quick) so that the target phase visibly moves the apical potentials; the three units shown
    are those whose plateau changed most between the phases."""
    model = cfg.model or sdnn.PAPER
    if not model.hidden or not model.spiking:
        raise ValueError("fig 3 draws the spikes and potentials of hidden units: it needs a spiking model "
                         f"with a hidden layer (hidden={model.hidden}, spiking={model.spiking})")
    x, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir)["train"]
    net = sdnn.init_weights(x.shape[1], model, rng)
    state = sdnn.init_state(net)
    n_warm = 0 if quick else 300
    sdnn.train_epoch(net, state, x[:n_warm], y[:n_warm], model, rng)
    info = sdnn.train_example(net, state, x[n_warm], y[n_warm], model, rng, record=True)
    units = np.argsort(np.abs(info["alpha_t"][0] - info["alpha_f"][0]))[-3:][::-1]   # largest plateau change
    T_f, T_t = (int(v) for v in info["T"])
    # the averaging window of each phase: after the settle time (Eq 22), or the code's last 20 steps
    window_start = (lambda T: model.t_settle) if model.window == "after_settle" else (lambda T: T - 20)
    print(f"fig 3: one training example (label {y[n_warm]}) after {n_warm} examples; units {units.tolist()}")
    return {"f": info["trace_f"][0][:, :, units], "t": info["trace_t"][0][:, :, units],   # (T, 4, 3)
            "units": units, "alpha_f": info["alpha_f"][0][units], "alpha_t": info["alpha_t"][0][units],
            "Va_f": info["V_a_f"][0][units], "Va_t": info["V_a_t"][0][units],
            "T": [T_f, T_t], "windows": [[window_start(T_f), T_f], [window_start(T_t), T_t]],
            "label": int(y[n_warm]), "n_warm": n_warm, "t_settle": model.t_settle, "k_b": model.k_b,
            "dataset": cfg.dataset, "preset": _preset_name(model), "sizes": [x.shape[1], *model.hidden, model.n_out]}


def plot_fig3(data):
    """Fig 3C from fig3's numbers: one panel per hidden unit, time runs through both phases."""
    T_f, T_t = data["T"]
    tr = np.concatenate([data["f"], data["t"]])          # (T_f + T_t, 4, units): V_b, V_a, V, spikes
    time_ms = np.arange(T_f + T_t)
    n_units = tr.shape[2]
    fig = new_figure(figsize=(9, 1.2 + 2.3 * n_units))
    axes = fig.subplots(n_units, 1, sharex=True, squeeze=False)[:, 0]
    settle = int(data["t_settle"])
    for u, ax in enumerate(axes):
        ax.plot(time_ms, tr[:, 1, u], color="tab:red", lw=1, label="apical $V^{0a}$")
        ax.plot(time_ms, tr[:, 0, u], color="tab:blue", lw=1, label="basal $V^{0b}$")
        ax.plot(time_ms, tr[:, 2, u], color="k", lw=1, label="soma $V^0$")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.15 * (hi - lo))                     # room for the spike raster on top
        spikes = np.flatnonzero(tr[:, 3, u])
        ax.plot(spikes, np.full(len(spikes), hi + 0.08 * (hi - lo)), "|", color="k", ms=7, label="spikes")
        phases = ((0, data["windows"][0], data["Va_f"][u], data["alpha_f"][u], "f"),
                  (T_f, data["windows"][1], data["Va_t"][u], data["alpha_t"][u], "t"))
        for start, (w0, w1), va, alpha, name in phases:
            ax.axvspan(start, start + settle, color="0.9", zorder=0)
            ax.hlines(va, start + w0, start + w1, color="tab:red", ls="--", lw=1.5)
            ax.annotate(f"$\\alpha^{name}$ = $\\sigma$({va:.2f}) = {alpha:.3f}", (start + w1, va), xytext=(-2, 3),
                        textcoords="offset points", color="tab:red", ha="right", va="bottom", fontsize=8,
                        bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5})
        ax.axvline(T_f, color="0.4", lw=1)
        ax.set_ylabel(f"unit {int(data['units'][u])}\nvoltage")
    axes[0].text(T_f / 2, 1.02, "forward phase", transform=axes[0].get_xaxis_transform(), ha="center", fontsize=9)
    axes[0].text(T_f + T_t / 2, 1.02, "target phase", transform=axes[0].get_xaxis_transform(), ha="center",
                 fontsize=9)
    axes[-1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, fontsize=8, frameon=False)
    axes[-1].set_xlabel("time (ms)")
    fig.suptitle(f"Fig 3C, real simulation ({'-'.join(map(str, data['sizes']))}, {data['preset']} preset, "
                 f"one {data['dataset']} example of label {data['label']}, after {data['n_warm']} training "
                 f"examples)\ngray: {settle}-ms settle time; dashed: mean apical potential over the averaging "
                 "window, whose sigmoid is the plateau $\\alpha$", fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------------
# Fig 4B: phase lengths.

def fig4(cfg, rng, quick):
    """Fig 4B, "Illustration of network phases for learning": phase lengths phase_min + Wald(mean,
    scale) of cfg.model (PAPER: 50 ms + Wald(2, 1)), as the code samples them (integer truncation,
    deep_learning.py l.720-721) and continuous. Paper: phases usually last 50-60 ms. 10^6 samples of
    each (20,000 with quick); the histograms are kept, not the samples."""
    model = cfg.model or sdnn.PAPER
    n = 20_000 if quick else 1_000_000
    trunc = sdnn.phase_lengths(n, model, rng)
    cont = sdnn.phase_lengths(n, model, rng, discrete=False)
    stats = {"n": n, "mean_truncated_ms": float(trunc.mean()), "mean_continuous_ms": float(cont.mean()),
             "sd_continuous_ms": float(cont.std()),
             "fraction_truncated_50_to_60": float(np.mean(trunc < 60)),
             "fraction_truncated_ge_60": float(np.mean(trunc >= 60)),
             "quantiles_continuous_ms": {str(q): float(np.quantile(cont, q)) for q in (0.5, 0.9, 0.99)}}
    print("fig 4: " + json.dumps(stats))
    # densities over the plotted 20 ms (as matplotlib's hist(density=True) normalises)
    m = model.phase_min
    dens_cont, edges_cont = np.histogram(cont, bins=m + np.arange(0, 21, 0.25), density=True)
    dens_trunc, edges_trunc = np.histogram(trunc, bins=m + np.arange(0, 21.0), density=True)
    return dict(stats, density_continuous=dens_cont, edges_continuous=edges_cont, density_truncated=dens_trunc,
                edges_truncated=edges_trunc, phase_min=m, wald=[model.wald_mean, model.wald_scale])


def plot_fig4(data):
    """Fig 4B from fig4's histograms and statistics."""
    fig = new_figure(figsize=(6, 3.6))
    ax = fig.subplots()
    m, (mu, lam) = data["phase_min"], data["wald"]
    ax.stairs(data["density_continuous"], data["edges_continuous"], fill=True, alpha=0.5,
              label=f"{m} + Wald({mu:g}, {lam:g}), continuous")
    ax.stairs(data["density_truncated"], data["edges_truncated"], lw=2,
              label=f"{m} + int(Wald({mu:g}, {lam:g})) (the code; used here)")
    ax.set_xlabel("phase length (ms)")
    ax.set_ylabel("density")
    ax.set_title(f"Fig 4B, phase lengths ({data['n']:,} samples): mean {data['mean_truncated_ms']:.2f} ms "
                 f"(truncated), {data['mean_continuous_ms']:.2f} ms (continuous);\n"
                 f"{100 * data['fraction_truncated_ge_60']:.1f} % of phases last 60 ms or more "
                 "(paper: phases usually last 50-60 ms)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------
# Krotov-Hopfield receptive fields (not a figure of the segregated-dendrite paper).

def kh_learn_synapses(W, x, cfg, rng):
    """cfg.epochs_unsup epochs of the unsupervised rule on x (baselines.kh_epoch), W in place; one line per
    epoch, a progress bar only on a terminal."""
    from tqdm import tqdm
    for epoch in range(cfg.epochs_unsup):
        start, perm = time.perf_counter(), rng.permutation(len(x))
        with tqdm(total=len(x), desc=f"unsupervised {epoch + 1}/{cfg.epochs_unsup}", leave=False,
                  disable=not sys.stdout.isatty()) as bar:
            eps, norm = baselines.kh_epoch(W, x, perm, epoch, cfg, bar.update)
        print(f"unsupervised epoch {epoch + 1:3d}  eps {eps:.2e}  median ||W_mu||_p {norm:.3f}  "
              f"{time.perf_counter() - start:6.1f} s", flush=True)
    return W


KH_DEMO_EPOCHS = 200   # unsupervised epochs of the authors' demo notebook


def kh_unconverged(W, p):
    """How many rows of W have not reached ||W_mu||_p = 1 (within 5 %): the rule's -<W_mu, v> W_mu term
    drives every norm to R = 1 (Krotov & Hopfield 2019), so a unit away from it is still learning."""
    norms = np.sum(np.abs(W.astype(np.float64)) ** p, axis=1) ** (1 / p)
    return int(np.sum(np.abs(norms - 1) >= 0.05))


def kh_verdict(n_off, n, epochs):
    """One line on how converged n fields are, n_off of them away from norm 1, after `epochs` epochs."""
    part = "most" if 2 * n_off > n else f"at least {n_off} of {n}"   # at norm 1 a field may still change shape
    short = (f" after {epochs} of the demo notebook's {KH_DEMO_EPOCHS} epochs"
             if isinstance(epochs, int) and epochs < KH_DEMO_EPOCHS else "")
    if n_off == 0:
        return f"all {n} units have reached norm 1{short}"
    return f"{part} fields are unconverged{short} ({n_off} of {n} units have not reached norm 1)"


def fig_kh_fields(cfg, rng, quick):
    """Receptive fields of Krotov-Hopfield hidden units (Krotov & Hopfield 2019, PNAS, Fig 3 style; the
    demo notebook's draw_weights): each unit's synapses as an image, red positive, blue negative.
    Learns cfg.model (default KH_DEMO) for cfg.epochs unsupervised epochs (default the model's
    epochs_unsup, 10 for KH_DEMO; the notebook runs 200, and after 10 many fields are still
    unconverged); quick: 1 epoch on 5,000 images."""
    model = cfg.model or KH_DEMO
    model = dataclasses.replace(model, epochs_unsup=1 if quick else (cfg.epochs or model.epochs_unsup))
    x = datasets.load(cfg.dataset, data_dir=cfg.data_dir)["train"][0]
    x = x[:5000] if quick else x
    start = time.perf_counter()
    W = kh_learn_synapses(baselines.kh_init(x.shape[1], model, rng), x, model, rng)
    print(f"kh-fields: {kh_verdict(kh_unconverged(W[:100], model.p), min(len(W), 100), model.epochs_unsup)}")
    return {"W": W.astype(np.float32),      # float32 for storage: a picture needs no more, and it halves the file
            "epochs_unsup": model.epochs_unsup, "n_images": len(x), "dataset": cfg.dataset,
            "seconds": time.perf_counter() - start, "p": model.p, "k": model.k, "Delta": model.Delta}


def plot_kh_fields(data):
    """The first (up to) 100 units' synapses as images on a square grid, each unit scaled by its own
    largest |synapse| (one shared scale lets a few large, unconverged units wash out all the others)."""
    W = data["W"]
    channels = 3 if W.shape[1] == 3072 else 1                                   # CIFAR-10: R, G, B planes
    side = int(np.sqrt(W.shape[1] // channels))
    n = min(len(W), 100)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.full((rows * (side + 1) - 1, cols * (side + 1) - 1), np.nan)     # 1-pixel gaps between units
    for j in range(n):
        r, c = divmod(j, cols)
        field = W[j].reshape(channels, side, side).mean(axis=0)                 # CIFAR: mean over colours
        top, left = r * (side + 1), c * (side + 1)
        grid[top:top + side, left:left + side] = field / np.abs(field).max()
    fig = new_figure(figsize=(7.5, 7.5 * rows / cols + 1))
    import matplotlib
    cmap = matplotlib.colormaps["bwr"].with_extremes(bad="0.75")
    ax = fig.subplots()
    im = ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    epochs, p = data.get("epochs_unsup", "?"), data.get("p")
    title = (f"Krotov-Hopfield receptive fields: first {n} of {len(W)} hidden units after {epochs} unsupervised "
             f"epoch{'s' if epochs != 1 else ''}\non {data.get('n_images', 0):,} {data.get('dataset', '')} images, "
             f"k = {data.get('k', '?')} (the demo notebook runs {KH_DEMO_EPOCHS} epochs)")
    if p is not None:
        title += f"\n{kh_verdict(kh_unconverged(W[:n], p), n, epochs)} (norm: $\\|W_\\mu\\|_p$ = 1 within 5 %, p = {p:g})"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="synapse / largest |synapse| of its unit")
    return fig


# ------------------------------------------------------------------------------------------------
# The training figures (5-9): runs of `experiments.py --train sdnn`, several seeds per condition, on
# both cores (experiments.run_all: finished runs are reused, interrupted ones resume), then the paper's
# panels and statistics from their JSONs and final networks.

TRAINING_PRESET = "march_2017"   # the code of March 2017 (sdnn.MARCH_2017); --preset paper for the paper's text
PAPER_ERROR = {"784-10": 8.3, "784-500-10": 4.1, "784-500-100-10": 3.2, "sparse x5": 3.7, "symmetric": 3.6}
# t(38) and p of the paper's t-tests (Results; two-tailed, Bonferroni-corrected), keyed by the compared conditions
PAPER_T = {("784-10", "784-500-10"): (197.11, 2.5e-58), ("784-10", "784-500-100-10"): (238.26, 1.9e-61),
           ("784-500-10", "784-500-100-10"): (42.99, 2.3e-33), ("regular", "sparse x5"): (16.43, 7.4e-19),
           ("regular", "symmetric"): (18.46, 4.3e-20), ("regular", "symmetric + noise"): (-71.54, 1.2e-41),
           ("symmetric", "symmetric + noise"): (-80.35, 1.5e-43), ("regular", "sparse x1"): (-51.30, 3.2e-36),
           ("sparse x5", "sparse x1"): (-100.73, 2.8e-47), ("g_a = 0", "g_a = 0.05"): (-4.00, 8.4e-4),
           ("g_a = 0", "g_a = 0.6"): (-95.24, 2.4e-46), ("g_a = 0.05", "g_a = 0.6"): (-92.51, 7.1e-46)}
PAPER_T_8S1 = {**PAPER_T, ("regular", "sparse x5"): (44.96, 4.4e-34)}   # Fig 8-S1's 20-epoch runs


QUICK_IMAGES = 500   # training images of a --quick run: enough to run every panel's code, not to learn much


def condition(hidden, *items, epochs=60, retests=20, seed_offset=0, diagnose=False):
    """One condition of a training figure: hidden sizes, --set items, epochs, final re-tests; its seeds
    start at --seed + seed_offset (another initialisation than the other conditions'). diagnose: record
    Fig 5's L0/L1 after every epoch (about a tenth of an epoch's time: only the run Fig 5 reads)."""
    return {"hidden": tuple(hidden), "set": list(items), "epochs": epochs, "retests": retests,
            "seed_offset": seed_offset, "diagnose": diagnose}


def run_argvs(cfg, quick, conditions):
    """The --train commands of conditions for cfg.seeds seeds, and the condition label of each."""
    n_seeds = cfg.seeds or (1 if quick else 2)
    argvs, labels = [], []
    for label, c in conditions.items():
        epochs = cfg.epochs or (min(2, c["epochs"]) if quick else c["epochs"])
        for seed in range(cfg.seed + c["seed_offset"], cfg.seed + c["seed_offset"] + n_seeds):
            argv = ["--train", "sdnn", "--preset", cfg.preset or TRAINING_PRESET, "--dataset", cfg.dataset,
                    "--n-valid", "0", "--epochs", str(epochs), "--seed", str(seed), "--out", cfg.runs,
                    "--hidden", *map(str, c["hidden"])]
            argv += ["--data-dir", cfg.data_dir] if cfg.data_dir else []
            argv += ["--set", *cfg.set, *c["set"]] if cfg.set or c["set"] else []
            argv += ["--retests", str(3 if quick else c["retests"])] if c["retests"] else []
            argv += ["--diagnose"] if c["diagnose"] else []
            argv += ["--quick", "--limit", str(QUICK_IMAGES)] if quick else []
            argvs.append(argv)
            labels.append(label)
    return argvs, labels


def sdnn_runs(cfg, quick, conditions):
    """Train every condition of {label: condition(...)} for cfg.seeds seeds on all 60,000 training images
    (the paper's protocol: no validation split, the test set after every epoch) with
    experiments.run_all. quick: 2 epochs of QUICK_IMAGES images, 300 test images, 3 re-tests. Returns
    {label: [result of each seed]}; failed runs are reported by run_all and left out."""
    import experiments
    argvs, labels = run_argvs(cfg, quick, conditions)
    results = {label: [] for label in conditions}
    for label, result in zip(labels, experiments.run_all(argvs, cfg.workers, scheduler=cfg.scheduler)):
        if "error" not in result:
            results[label].append(result)
    missing = [label for label, runs in results.items() if not runs]
    if missing:
        raise ValueError(f"no finished run for {missing}: see the logs in {cfg.runs}; run the figure again to resume")
    return results


def _conditions():
    """Each training figure's conditions: {figure: {label: condition}}. One table, so that --fig all can
    train the runs of every figure at once (shared runs once) before drawing them."""
    one = condition((500,), diagnose=True)     # the network of Figs 5, 6, 7 and 8: one run serves them all
    return {
        "5": {"784-500-10": one},
        "6": {"784-10": condition(()), "784-500-10": one, "784-500-100-10": condition((500, 100))},
        "6s1": {"synchronous": one, "stochastic": condition((500,), "stochastic_plateau=true")},
        "7": {"spiking feedback": one,
              "rate feedback": condition((500,), "spiking_feedback=false", epochs=10, retests=0),
              "backprop twin": condition((500,), "backprop=true", seed_offset=100)},
        "8": {"regular": one, "sparse x5": condition((500,), "sparse_feedback=0.8"),
              "symmetric": condition((500,), "symmetric_feedback=true"),
              "symmetric + noise": condition((500,), "symmetric_feedback=true", "symmetric_noise_sd=0.05")},
        "8s1": {"regular": condition((500,), epochs=20),
                "sparse x5": condition((500,), "sparse_feedback=0.8", epochs=20),
                "sparse x1": condition((500,), "sparse_feedback=0.8", "sparse_gain=1", epochs=20)},
        "9": {f"g_a = {g}": condition((500, 100), *([f"g_a={g}"] if g else [])) for g in (0, 0.05, 0.6)}}


def all_runs(cfg, quick):
    """Every training figure's runs, each once (the argument lists of experiments.run_all, which starts
    the longest first)."""
    argvs = [a for conds in _conditions().values() for a in run_argvs(cfg, quick, conds)[0]]
    return list(dict.fromkeys(map(tuple, argvs)))


def suite_time(results, seed, workers=2):
    """The wall time of the training figures' runs for one seed (--seed itself, and the backprop twin's
    seed + 100) on `workers` cores, from the runs' own records: each run's typical epoch (the median of its
    training + testing seconds, robust to epochs slowed by other jobs) times its epochs, plus its initial
    test and re-tests (runs recorded before those were timed: one test and `--retests` tests, each as long
    as a typical epoch's testing); the runs scheduled longest first, each on the core that frees first."""
    hours = []
    for r in results:
        if "error" in r or r.get("seed") not in (seed, seed + 100) or not r.get("seconds_per_epoch"):
            continue
        test = float(np.median(r["eval_seconds_per_epoch"]))
        extra = r.get("start_seconds", test) + r.get("finish_seconds", test * (r.get("retests") or 0))
        hours.append((float(np.median(np.add(r["seconds_per_epoch"], r["eval_seconds_per_epoch"]))) * r["epochs"]
                      + extra) / 3600)
    cores = [0.0] * workers
    for h in sorted(hours, reverse=True):
        cores[cores.index(min(cores))] += h
    return (f"one seed of the training figures: {len(hours)} finished runs, {sum(hours):.1f} core-hours; "
            f"{max(cores):.1f} h on {workers} cores (the runs' own times, longest first)")


def curves(results):
    """Per condition: test error (%) per epoch (a row per seed), the final re-tests (%), the seeds, the
    wall time per run (minutes) and the run's command."""
    out = {}
    for label, runs in results.items():
        n = min(r["epochs"] for r in runs)
        out[label] = {"test": [[100 * e for e in r["test_error"][:n]] for r in runs],
                      "retests": [[100 * e for e in r.get("test_retests", [])] for r in runs],
                      "seeds": [r["seed"] for r in runs], "command": " ".join(strip_out(runs[0]["command"])),
                      "minutes": [(sum(r["seconds_per_epoch"]) + sum(r["eval_seconds_per_epoch"])) / 60 for r in runs]}
    return out


def sd(a, axis=None):
    """The sample SD over seeds (ddof=1, as the studies' tables); 0 for a single seed."""
    a = np.asarray(a, dtype=float)
    n = a.size if axis is None else a.shape[axis]
    return np.std(a, axis=axis, ddof=1) if n > 1 else np.zeros_like(np.mean(a, axis=axis))


def strip_out(argv):
    """A run's command without the machine's own folders (--out, --data-dir)."""
    drop = {i + 1 for i, a in enumerate(argv) if a in ("--out", "--data-dir")}
    return [a for i, a in enumerate(argv) if i not in drop and a not in ("--out", "--data-dir")]


def ttests(c, pairs, paper=PAPER_T):
    """The paper's statistics: a two-tailed t-test (scipy.stats.ttest_ind) between the re-tests of the
    networks of two conditions, Bonferroni-corrected for the len(pairs) comparisons of the panel; one per
    seed (the paper trained one network per condition), pairing the networks of the same seed, so a seed
    that failed in one condition leaves out only its own test. t > 0: the first condition errs more."""
    from scipy import stats
    rows = []
    for a, b in pairs:
        ra, rb = ({s: r for s, r in zip(c[k]["seeds"], c[k]["retests"]) if r} for k in (a, b))
        seeds = sorted(set(ra) & set(rb))
        ours = []
        for s in seeds:
            t, p = stats.ttest_ind(ra[s], rb[s])
            ours.append([float(t), float(min(1.0, p * len(pairs)))])
        rows.append({"a": a, "b": b, "seeds": seeds, "ours": ours,
                     "paper": list(paper[a, b]) if (a, b) in paper else None})
    return rows


def seeds_label(n):
    return f"{n} seed" + ("s" if n != 1 else "")


def report(name, c, tests=(), paper=PAPER_ERROR):
    """Print each condition's final error (mean +- SD over seeds) beside the paper's, and the t-tests."""
    for label, v in c.items():
        final = np.array([row[-1] for row in v["test"]])
        retest = [np.mean(r) for r in v["retests"] if r]
        print(f"{name} {label:>18}: test error after epoch {len(v['test'][0])} {final.mean():.2f} +- "
              f"{sd(final):.2f} % ({seeds_label(len(final))})" + (f", re-tests {np.mean(retest):.2f} %" if retest else "")
              + (f"; paper {paper[label]} %" if label in paper else ""))
    for row in tests:
        ours = ", ".join(f"t = {t:.2f}, p = {p:.2g}" for t, p in row["ours"])
        theirs = f"t(38) = {row['paper'][0]}, p = {row['paper'][1]:.2g}" if row["paper"] else "no number"
        print(f"{name} {row['a']} vs {row['b']}: ours {ours}; paper {theirs}")


def run_model(result):
    """The final network of a run (from its checkpoint) and its sdnn.Config."""
    import pickle
    with open(result["path"] + ".ckpt", "rb") as f:
        model = pickle.load(f)["model"]
    derived = {"k_b", "k_d", "P0", "P1"}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in result["config"].items() if k not in derived}
    return model["avg"] or model["net"], sdnn.Config(**fields)


def plot_curves(ax, c, title, paper=PAPER_ERROR, last=None):
    """Test error per epoch, mean +- SD over seeds as a band; the paper's final number as a dashed line."""
    for i, (label, v) in enumerate(c.items()):
        E = np.array(v["test"])[:, :last]
        x = np.arange(1, E.shape[1] + 1)
        m, s = E.mean(axis=0), sd(E, axis=0)
        ax.plot(x, m, color=f"C{i}", lw=1.5, label=f"{label}: {m[-1]:.2f} ± {s[-1]:.2f} % ({seeds_label(len(E))})")
        ax.fill_between(x, m - s, m + s, color=f"C{i}", alpha=0.25, lw=0)
        if label in paper:
            ax.axhline(paper[label], color=f"C{i}", ls="--", lw=1, label=f"paper, {label}: {paper[label]} %")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    finals = [np.mean([row[-1] for row in v["test"]]) for v in c.values()]
    ax.set_ylim(0, 15 if max(finals) < 10 else None)          # the last epochs in view, when they are low
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def plot_retests(ax, c, tests):
    """The re-tests of each condition's network of the first seed (the lowest seed number among the
    conditions' re-tested runs; a condition without it: its own lowest), and the t-tests beside the paper's."""
    tested = {k: {s: r for s, r in zip(v["seeds"], v["retests"]) if r} for k, v in c.items()}
    tested = {k: v for k, v in tested.items() if v}
    first = min(s for v in tested.values() for s in v) if tested else None
    ax.boxplot([v.get(first, v[min(v)]) for v in tested.values()],
               tick_labels=[k.replace(" + ", "\n+ ") for k in tested])     # "symmetric\n+ noise"
    ax.set_ylabel("test error of re-tests (%)")
    lines = [f"{r['a']} vs {r['b']}: t = {r['ours'][0][0]:.1f} (seed {r.get('seeds', ['?'])[0]}; "
             + (f"paper {r['paper'][0]})" if r["paper"] else "no t in the paper)") for r in tests if r["ours"]]
    ax.set_title(f"final network, seed {first}, fresh spikes per re-test\n" + "\n".join(lines), fontsize=7)
    ax.tick_params(axis="x", labelsize=7)


def titled(data, text):
    return f"{text} ({data['preset']} preset)" + (f"\nQUICK: 2 epochs, {QUICK_IMAGES:,} images" if data["quick"] else "")


def fig6(cfg, rng, quick):
    """Fig 6, "Improvement of learning with hidden layers": B, test error per epoch of 784-10, 784-500-10
    and 784-500-100-10 over 60 epochs and the t-tests of 20 re-tests (paper: 8.3, 4.1, 3.2 %); C, t-SNE
    of the input and of both hidden layers' mean rates over the test images (PCA to 50 dimensions first)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    runs = sdnn_runs(cfg, quick, _conditions()["6"])
    c = curves(runs)
    tests = ttests(c, [("784-10", "784-500-10"), ("784-10", "784-500-100-10"), ("784-500-10", "784-500-100-10")])
    report("fig 6", c, tests)
    net, model = run_model(runs["784-500-100-10"][0])
    X, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir)["test"]
    X, y = (X[:300], y[:300]) if quick else (X, y)
    layers = [X] + sdnn.hidden_rates(net, X, model, rng)
    embed = [TSNE(2, init="pca", random_state=cfg.seed).fit_transform(
        PCA(min(50, a.shape[1])).fit_transform(a)).astype(np.float16) for a in layers]   # drawing only: small JSON
    return {"curves": c, "tests": tests, "tsne_input": embed[0], "tsne_hidden1": embed[1], "tsne_hidden2": embed[2],
            "tsne_labels": y.astype(np.int8), "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig6(data):
    fig = new_figure(figsize=(13, 7.5))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    ax = top.subplots(1, 2, width_ratios=[2, 1])
    plot_curves(ax[0], data["curves"], titled(data, "Fig 6B, test error per epoch"))
    plot_retests(ax[1], data["curves"], data["tests"])
    for a, key, name in zip(bottom.subplots(1, 3), ("tsne_input", "tsne_hidden1", "tsne_hidden2"),
                            ("input", "hidden layer 1", "hidden layer 2")):
        a.scatter(*data[key].T, c=data["tsne_labels"], cmap="tab10", s=1)
        a.set_title(f"Fig 6C, t-SNE of the {name} ({len(data['tsne_labels'])} test images)", fontsize=8)
        a.set_axis_off()
    return fig


def fig5(cfg, rng, quick):
    """Fig 5, "Co-ordinated errors between the output and hidden layers": B, L1 against L0 for the test
    '2's after epoch 1, run without updates (real pairs and L1 shuffled); C, Pearson r(L0, L1) per digit
    after each epoch, real and shuffled. Paper: r = 0.61 for the '2's."""
    runs = sdnn_runs(cfg, quick, _conditions()["5"])["784-500-10"]
    r = np.array([run["r_L0_L1"] for run in runs])                   # seeds x epochs x classes
    r_shuffled = np.array([run["r_L0_L1_shuffled"] for run in runs])
    twos = np.array(runs[0]["L0_L1_twos"][0])                        # epoch 1, first seed
    print(f"fig 5: r(L0, L1) of the test '2's after epoch 1 {r[:, 0, 2].mean():.2f} +- {sd(r[:, 0, 2]):.2f}, "
          f"after epoch 2 {r[:, 1, 2].mean():.2f} ({len(runs)} seeds; shuffled {r_shuffled[:, 0, 2].mean():.2f}); "
          f"paper 0.61")
    return {"r": r, "r_shuffled": r_shuffled, "L0_twos": twos[:, 0], "L1_twos": twos[:, 1],
            "L1_twos_shuffled": rng.permutation(twos[:, 1]), "paper_r": 0.61,
            "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig5(data):
    fig = new_figure(figsize=(12, 4.5))
    ax = fig.subplots(1, 2)
    ax[0].scatter(data["L0_twos"], data["L1_twos_shuffled"], s=4, color="0.6", label="shuffled")
    ax[0].scatter(data["L0_twos"], data["L1_twos"], s=4, color="C3",
                  label=f"real: r = {np.corrcoef(data['L0_twos'], data['L1_twos'])[0, 1]:.2f} (paper {data['paper_r']})")
    ax[0].set_xlabel("$L^0$ (hidden layer)")
    ax[0].set_ylabel("$L^1$ (output layer)")
    ax[0].legend(fontsize=8)
    ax[0].set_title(titled(data, "Fig 5B, test '2's after epoch 1, no updates"), fontsize=9)
    r, rs = data["r"].mean(axis=0), data["r_shuffled"].mean(axis=0)     # epochs x classes
    x = np.arange(1, len(r) + 1)
    for d in range(r.shape[1]):
        ax[1].plot(x, r[:, d], color=f"C{d}", lw=1, label=str(d))
        ax[1].plot(x, rs[:, d], color=f"C{d}", lw=0.5, ls=":")
    ax[1].axhline(data["paper_r"], color="k", ls="--", lw=1, label="paper, '2's")
    ax[1].axvspan(0.5, 1.5, color="0.9", zorder=0)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("Pearson r($L^0$, $L^1$)")
    ax[1].set_title(f"Fig 5C, per digit (solid), shuffled (dotted); mean of {len(data['r'])} seeds", fontsize=9)
    ax[1].legend(fontsize=7, ncol=2)
    return fig


def fig5s1(cfg, rng, quick):
    """Fig 5-S1, "Weight alignment during first epoch of training": the largest eigenvalue of
    (I - U)^T (I - U), U = J_beta J_gamma with each Jacobian averaged over the last 100 examples (the
    paper; the code averaged the product, also recorded), every 100 examples of epoch 1 of 784-500-10;
    U before and after the epoch. Paper: the eigenvalue falls below 1; U approaches the identity.
    Trained here, not through a run: one epoch of all 60,000 training images (QUICK_IMAGES with quick)."""
    import experiments
    from collections import deque
    base = dataclasses.asdict(sdnn.with_hidden(sdnn.PRESETS[cfg.preset or TRAINING_PRESET], (500,)))
    model = experiments.rule_config(sdnn.Config, list(cfg.set), **base)
    x, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir, n_valid=0)["train"]
    n = QUICK_IMAGES if quick else len(x)
    net = sdnn.init_weights(x.shape[1], model, rng)
    state = sdnn.init_state(net)
    Jb, Jg, lam, lam_code, U = deque(maxlen=100), deque(maxlen=100), [], [], []
    eye = np.eye(model.n_out)
    top = lambda A: float(np.linalg.eigvalsh((eye - A).T @ (eye - A))[-1])
    for i, j in enumerate(rng.permutation(len(x))[:n]):
        info = sdnn.train_example(net, state, x[j], y[j], model, rng)
        J_beta, J_gamma = sdnn.jacobians(net, info["V_out_f"], model)
        Jb.append(J_beta)
        Jg.append(J_gamma)
        if (i + 1) % 100 == 0:
            U.append(np.mean(Jb, axis=0) @ np.mean(Jg, axis=0))
            lam.append(top(U[-1]))
            lam_code.append(top(np.mean([b @ g for b, g in zip(Jb, Jg)], axis=0)))
    tail = np.array(lam[len(lam) // 2:])
    print(f"fig 5-S1: largest eigenvalue {lam[0]:.3f} after 100 examples; first below 1 after example "
          f"{100 * (np.argmax(np.array(lam) < 1) + 1) if min(lam) < 1 else 'never'}; second half of the epoch: "
          f"mean {tail.mean():.3f}, below 1 in {100 * np.mean(tail < 1):.0f} % of the windows (paper: falls below 1)")
    return {"lam": np.array(lam), "lam_code": np.array(lam_code), "U_before": U[0], "U_after": U[-1],
            "n": n, "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig5s1(data):
    fig = new_figure(figsize=(13, 4))
    ax = fig.subplots(1, 3, width_ratios=[2, 1, 1])
    x = 100 * np.arange(1, len(data["lam"]) + 1)
    ax[0].plot(x, data["lam"], lw=1, label="mean Jacobians (the paper)")
    ax[0].plot(x, data["lam_code"], lw=0.7, alpha=0.7, label="mean of the products (the code)")
    ax[0].axhline(1, color="k", ls="--", lw=1, label="1 (paper: falls below)")
    ax[0].set_xlabel("training example")
    ax[0].set_ylabel("largest eigenvalue of $(I-U)^T(I-U)$")
    ax[0].legend(fontsize=8)
    ax[0].set_title(titled(data, "Fig 5-S1A, epoch 1"), fontsize=9)
    for a, key, name in ((ax[1], "U_before", "first 100"), (ax[2], "U_after", "last 100")):
        im = a.imshow(data[key], cmap="RdBu_r", vmin=-1, vmax=1)
        a.set_xticks(range(0, 10, 2))
        a.set_yticks(range(0, 10, 2))
        a.set_title(f"Fig 5-S1B, $J_\\beta J_\\gamma$, {name} examples", fontsize=8)
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    return fig


def fig6s1(cfg, rng, quick):
    """Fig 6-S1, "Learning with stochastic plateau times": A, plateau times of 100 hidden units over two
    training examples; B, test error with synchronous and stochastic plateaus. Paper: no harm."""
    c = curves(sdnn_runs(cfg, quick, _conditions()["6s1"]))
    tests = ttests(c, [("synchronous", "stochastic")])
    report("fig 6-S1", c, tests)
    import experiments
    base = dataclasses.asdict(sdnn.with_hidden(sdnn.PRESETS[cfg.preset or TRAINING_PRESET], (500,)))
    model = experiments.rule_config(sdnn.Config, [*cfg.set, "stochastic_plateau=true"], **base)
    x, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir)["train"]
    net = sdnn.init_weights(x.shape[1], model, rng)
    state, times, ends, start = sdnn.init_state(net), [], [], 0
    for j in range(2):
        info = sdnn.train_example(net, state, x[j], y[j], model, rng)
        for phase, T in zip(info["plateau_time"], info["T"]):
            times.append(start + np.asarray(phase[0][:100]))
            start += T
            ends.append(start)
    return {"curves": c, "tests": tests, "plateau_times": np.array(times), "phase_ends": ends,
            "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig6s1(data):
    fig = new_figure(figsize=(13, 4.5))
    ax = fig.subplots(1, 3, width_ratios=[1.2, 2, 1])
    for times in data["plateau_times"]:
        ax[0].plot(times, np.arange(len(times)), "|", color="C3", ms=3)
    for end in data["phase_ends"]:
        ax[0].axvline(end, color="0.5", lw=0.8)
    ax[0].set_xlabel("time (ms)")
    ax[0].set_ylabel("hidden unit")
    ax[0].set_title("Fig 6-S1A, plateau times, two examples", fontsize=9)
    plot_curves(ax[1], data["curves"], titled(data, "Fig 6-S1B"))
    plot_retests(ax[2], data["curves"], data["tests"])
    return fig


def angle_summary(angles, per_epoch):
    """The dip and the rise of Fig 7A's curve, from blocks of 100 examples (seeds x blocks), per_epoch
    blocks an epoch: the lowest mean of 1,000 examples, the mean of the last tenth of epoch 1 and the mean
    of the last epoch recorded."""
    smooth = np.array([np.convolve(a, np.ones(10) / 10, mode="valid") for a in angles])
    return (float(smooth.min(axis=1).mean()), float(angles[:, per_epoch - max(1, per_epoch // 10):per_epoch].mean()),
            float(angles[:, -per_epoch:].mean()))


def angle_by_loss(net, cfg, X, y, rng, draws):
    """Fig 7A's angle on a trained network, per example, without updates (sdnn's NumPy path, which returns
    the two errors): rows of (mean output loss L1 (Eq 23), mean angle of single draws of the spikes, angle
    between the two errors each averaged over `draws` draws). Averaging removes the spike noise of the
    plateau difference, which dominates where the network already fits the example."""
    state, rows = sdnn.init_state(net), []
    for x, t in zip(X, y):
        d = [sdnn.train_example(net, state, x, t, cfg, rng, jit=False, update=False) for _ in range(draws)]
        rows.append((np.mean([i["L1"] for i in d]), np.nanmean([i["angle"] for i in d]),
                     sdnn._angle(np.mean([i["E0"] for i in d], axis=0), np.mean([i["E0_bp"] for i in d], axis=0))))
    return np.array(rows)


def by_quartile(rows):
    """Means of the angle columns of angle_by_loss's rows within each quartile of their loss, low to high."""
    q = np.quantile(rows[:, 0], [0.25, 0.5, 0.75])
    group = np.searchsorted(q, rows[:, 0])
    return np.array([np.nanmean(rows[group == g, 1:], axis=0) for g in range(4)])


def fig7(cfg, rng, quick):
    """Fig 7, "Approximation of backpropagation with local learning rules": A, angle between the hidden
    update and backprop's over 10 epochs, spiking vs rate feedback (mean of 100 examples); B, receptive
    fields (rows of W0) after 60 epochs, local rule vs the backprop-trained twin (Config.backprop,
    another initialisation: from the same one every field would match its own start); C, each local
    field's largest Pearson r with the twin's 500 fields, real vs pixel-shuffled fields. Beside them, why A
    rises after epoch 1: angle_by_loss on each condition's final network (seed 0), by quartile of the loss.
    Paper: spiking feedback dips to about 65 and rises to about 70 degrees, rate feedback about 35
    and 40 degrees."""
    runs = sdnn_runs(cfg, quick, _conditions()["7"])
    angle = {k: np.array([r["angle_per_100"] for r in runs[k]]).reshape(len(runs[k]), -1)
             for k in ("spiking feedback", "rate feedback")}
    per_epoch = -(-runs["spiking feedback"][0]["n_train"] // 100)     # experiments.block_means' blocks of 100
    for k, paper in (("spiking feedback", (65, 70)), ("rate feedback", (35, 40))):
        low, first, end = angle_summary(angle[k], per_epoch)
        print(f"fig 7A {k}: lowest {low:.1f} deg, end of epoch 1 {first:.1f} deg, epoch {angle[k].shape[1] // per_epoch} "
              f"{end:.1f} deg; "
              f"paper about {paper[0]} then {paper[1]}")
    final = {k: run_model(runs[k][0]) for k in ("spiking feedback", "rate feedback", "backprop twin")}   # first seeds
    W_local, W_bp = final["spiking feedback"][0].W[0], final["backprop twin"][0].W[0]
    r = np.corrcoef(W_local, W_bp)[:len(W_local), len(W_local):].max(axis=1)
    shuffled = np.array([w[rng.permutation(len(w))] for w in W_local])
    r_shuffled = np.corrcoef(shuffled, W_bp)[:len(W_local), len(W_local):].max(axis=1)
    print(f"fig 7C: median largest r {np.median(r):.2f}, shuffled {np.median(r_shuffled):.2f} (paper: above shuffled)")
    units = rng.choice(len(W_local), 5, replace=False)
    x, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir, n_valid=0)["train"]
    pick, draws, loss = rng.choice(len(x), 10 if quick else 200, replace=False), 2 if quick else 20, {}
    for k in ("spiking feedback", "rate feedback"):   # why the curves rise: the angle by the example's loss
        loss[k] = angle_by_loss(*final[k], x[pick], y[pick], rng, draws)
        q = by_quartile(loss[k])
        print(f"fig 7A {k}, final network, {len(pick)} training images by quartile of their loss L1, low to high: "
              f"angle {', '.join(f'{a:.0f}' for a in q[:, 0])} deg (one draw), "
              f"{', '.join(f'{a:.0f}' for a in q[:, 1])} deg (errors averaged over {draws} draws)")
    return {"angle_spiking": angle["spiking feedback"], "angle_rate": angle["rate feedback"],
            "loss_angle_spiking": loss["spiking feedback"], "loss_angle_rate": loss["rate feedback"],
            "loss_angle_draws": draws, "loss_angle_epochs": [runs[k][0]["epochs"] for k in loss],
            "rf_local": W_local[units], "rf_backprop": W_bp[np.argmax(np.corrcoef(W_local[units], W_bp)[:5, 5:], axis=1)],
            "max_r": r, "max_r_shuffled": r_shuffled, "angle_blocks_per_epoch": per_epoch,
            "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig7(data):
    fig = new_figure(figsize=(13, 7))
    top, bottom = fig.subfigures(2, 1)
    ax = top.subplots(1, 3, width_ratios=[2, 1, 1])
    for key, color, paper in (("angle_spiking", "C0", (65, 70)), ("angle_rate", "C3", (35, 40))):
        a = data[key]
        x = 100 * np.arange(1, a.shape[1] + 1)
        low, first, end = angle_summary(a, data["angle_blocks_per_epoch"])
        ax[0].plot(x, a.mean(axis=0), color=color, lw=0.5,
                   label=f"{key[6:]} feedback: lowest {low:.0f}°, end of epoch 1 {first:.0f}°, epoch "
                         f"{a.shape[1] // data['angle_blocks_per_epoch']} {end:.0f}° (paper ≈ {paper[0]}° → {paper[1]}°)")
        for p in paper:
            ax[0].axhline(p, color=color, ls="--", lw=0.8)
    ax[0].axhline(90, color="k", lw=0.5)
    ax[0].set_xlabel("training example")
    ax[0].set_ylabel("angle to backprop's update (°)")
    ax[0].legend(fontsize=8)
    ax[0].set_title(titled(data, "Fig 7A, first hidden layer, mean of 100 examples"), fontsize=9)
    bins = np.linspace(-0.2, 1, 49)
    ax[1].hist(data["max_r_shuffled"], bins, color="0.6", label="shuffled")
    ax[1].hist(data["max_r"], bins, color="C0", alpha=0.8, label="real")
    ax[1].set_xlabel("largest r with a backprop field")
    ax[1].legend(fontsize=8)
    ax[1].set_title("Fig 7C", fontsize=9)
    for key, color, epochs in zip(("loss_angle_spiking", "loss_angle_rate"), ("C0", "C3"),
                                  data["loss_angle_epochs"]):
        q = by_quartile(data[key])
        ax[2].plot(range(1, 5), q[:, 0], "o-", color=color, label=f"{key[11:]}, epoch {epochs}: one draw")
        ax[2].plot(range(1, 5), q[:, 1], "s--", color=color, label=f"mean of {data['loss_angle_draws']} draws")
    ax[2].axhline(90, color="k", lw=0.5)
    ax[2].set_xticks(range(1, 5), ["lowest", "2", "3", "highest"])
    ax[2].set_xlabel("quartile of the example's output loss")
    ax[2].set_ylabel("angle to backprop's (°)")
    ax[2].legend(fontsize=7)
    ax[2].set_title("why A rises: final networks, no updates", fontsize=9)
    ax = bottom.subplots(2, 5)
    side = int(np.sqrt(data["rf_local"].shape[1]))
    for j in range(5):
        for row, key in enumerate(("rf_local", "rf_backprop")):
            w = data[key][j].reshape(side, side)
            ax[row, j].imshow(w, cmap="RdBu_r", vmin=-np.abs(w).max(), vmax=np.abs(w).max())
            ax[row, j].set_axis_off()
        ax[0, j].set_title("local rule" if j == 0 else "", fontsize=8)
        ax[1, j].set_title("best-matching backprop field" if j == 0 else "", fontsize=8)
    bottom.suptitle("Fig 7B, receptive fields after the last epoch", fontsize=9)
    return fig


def fig8(cfg, rng, quick):
    """Fig 8, "Conditions on feedback synapses for effective learning": B, regular vs sparse feedback
    (80 % of Y zero, the rest x5); D, regular vs symmetric (Y = W^T) vs symmetric + N(0, 0.05) noise.
    Paper: sparse 3.7 %, symmetric 3.6 % (regular 4.1 %); noise loses symmetry's advantage."""
    c = curves(sdnn_runs(cfg, quick, _conditions()["8"]))
    tests = ttests(c, [("regular", "sparse x5")]) + ttests(c, [("regular", "symmetric"), ("regular", "symmetric + noise"),
                                                              ("symmetric", "symmetric + noise")])
    report("fig 8", c, tests, dict(PAPER_ERROR, regular=4.1))
    return {"curves": c, "tests": tests, "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig8(data):
    fig = new_figure(figsize=(13, 4.5))
    ax = fig.subplots(1, 3, width_ratios=[1.5, 1.5, 1])
    c = data["curves"]
    paper = dict(PAPER_ERROR, regular=4.1)
    plot_curves(ax[0], {k: c[k] for k in ("regular", "sparse x5")}, titled(data, "Fig 8B"), paper)
    plot_curves(ax[1], {k: c[k] for k in ("regular", "symmetric", "symmetric + noise")}, "Fig 8D", paper)
    plot_retests(ax[2], c, data["tests"])
    return fig


def fig8s1(cfg, rng, quick):
    """Fig 8-S1, "Importance of weight magnitudes for learning with sparse weights": regular, sparse x5
    and sparse without amplification (x1) over 20 epochs. Paper: amplified sparse beats regular,
    unamplified is worse."""
    c = curves(sdnn_runs(cfg, quick, _conditions()["8s1"]))
    tests = ttests(c, [("regular", "sparse x5"), ("regular", "sparse x1"), ("sparse x5", "sparse x1")], PAPER_T_8S1)
    report("fig 8-S1", c, tests, {})
    return {"curves": c, "tests": tests, "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig8s1(data):
    fig = new_figure(figsize=(11, 4.5))
    ax = fig.subplots(1, 2, width_ratios=[2, 1])
    plot_curves(ax[0], data["curves"], titled(data, "Fig 8-S1, 20 epochs"), {})
    plot_retests(ax[1], data["curves"], data["tests"])
    return fig


def fig9(cfg, rng, quick):
    """Fig 9, "Importance of dendritic segregation for deep learning": 784-500-100-10 with apical
    conductance g_a = 0, 0.05 and 0.6 (k_b follows g_a); A, apical and somatic potentials of a hidden
    unit over one example with g_a = 0.05. Paper: 0.05 makes little difference, 0.6 impairs learning."""
    c = curves(sdnn_runs(cfg, quick, _conditions()["9"]))
    tests = ttests(c, [("g_a = 0", "g_a = 0.05"), ("g_a = 0", "g_a = 0.6"), ("g_a = 0.05", "g_a = 0.6")])
    report("fig 9", c, tests, {"g_a = 0": 3.2})
    import experiments
    base = dataclasses.asdict(sdnn.with_hidden(sdnn.PRESETS[cfg.preset or TRAINING_PRESET], (500, 100)))
    model = experiments.rule_config(sdnn.Config, [*cfg.set, "g_a=0.05"], **base)
    x, y = datasets.load(cfg.dataset, data_dir=cfg.data_dir)["train"]
    net = sdnn.init_weights(x.shape[1], model, rng)
    info = sdnn.train_example(net, sdnn.init_state(net), x[0], y[0], model, rng, record=True)
    trace = np.concatenate([info["trace_f"][0], info["trace_t"][0]])[:, :, 0]     # (T, 4): V_b, V_a, V, spikes
    return {"curves": c, "tests": tests, "trace": trace, "T_f": int(info["T"][0]),
            "preset": (cfg.preset or TRAINING_PRESET).upper(), "quick": quick}


def plot_fig9(data):
    fig = new_figure(figsize=(13, 4.5))
    ax = fig.subplots(1, 3, width_ratios=[1.2, 2, 1])
    ax[0].plot(data["trace"][:, 1], color="C3", lw=1, label="apical")
    ax[0].plot(data["trace"][:, 2], color="k", lw=1, label="soma")
    ax[0].axvline(data["T_f"], color="0.5", lw=0.8)
    ax[0].set_xlabel("time (ms)")
    ax[0].legend(fontsize=8)
    ax[0].set_title("Fig 9A, a hidden unit, g_a = 0.05", fontsize=9)
    plot_curves(ax[1], data["curves"], titled(data, "Fig 9B, 784-500-100-10"), {"g_a = 0": 3.2})
    plot_retests(ax[2], data["curves"], data["tests"])
    return fig


# name -> (compute, plot, default model config)
FIGURES = {"3": (fig3, plot_fig3, sdnn.PAPER), "4": (fig4, plot_fig4, sdnn.PAPER),
           "kh-fields": (fig_kh_fields, plot_kh_fields, KH_DEMO),
           # the training figures: no model config of their own (--preset and --set reach their runs)
           "5": (fig5, plot_fig5, None), "5s1": (fig5s1, plot_fig5s1, None), "6": (fig6, plot_fig6, None),
           "6s1": (fig6s1, plot_fig6s1, None), "7": (fig7, plot_fig7, None), "8": (fig8, plot_fig8, None),
           "8s1": (fig8s1, plot_fig8s1, None), "9": (fig9, plot_fig9, None)}
