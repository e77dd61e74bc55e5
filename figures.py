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
             f"k = {data.get('k', '?')} (the demo notebook runs 200 epochs; fewer leave many fields unconverged)")
    if p is not None:   # the rule's -<W_mu, v> W_mu term drives every ||W_mu||_p to R = 1 (Krotov & Hopfield 2019)
        norms = np.sum(np.abs(W[:n].astype(np.float64)) ** p, axis=1) ** (1 / p)
        title += f"\n{np.sum(np.abs(norms - 1) < 0.05)} of {n} units have reached $\\|W_\\mu\\|_p$ = 1 (within 5 %); p = {p:g}"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="synapse / largest |synapse| of its unit")
    return fig


# name -> (compute, plot, default model config)
FIGURES = {"3": (fig3, plot_fig3, sdnn.PAPER), "4": (fig4, plot_fig4, sdnn.PAPER),
           "kh-fields": (fig_kh_fields, plot_kh_fields, KH_DEMO)}
