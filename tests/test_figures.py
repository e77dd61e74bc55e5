"""figures.py and studies.py in-process: compute -> save -> load -> plot -> PNG + PDF, same seed same
numbers, and Fig 4B's statistics against the inverse Gaussian's closed form."""
import math
import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import data_dir_or_skip
from matplotlib.figure import Figure
from scipy import stats

import datasets
import figures
import sdnn
import studies

# every figure and study (the quick sdnn_fidelity takes about 20 s, most of it spiking tests)
# the training figures (model None) run --train commands: test_experiments.py smoke-tests them from the CLI;
# so does the robustness study (test_robustness.py)
ENTRIES = [(name, *entry) for name, entry in {**figures.FIGURES, **studies.STUDIES}.items() if (entry[2] is not None
           or name in studies.STUDIES) and name != "robustness"]


def assert_same(a, b):
    """Equal dicts: arrays elementwise (and of the same dtype), everything else with ==."""
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("name,compute,plot,model", ENTRIES)
def test_compute_save_load_plot(name, compute, plot, model, tmp_path):
    cfg = figures.FigConfig(dataset="mnist", data_dir=data_dir_or_skip("mnist"), model=model,
                            runs=str(tmp_path / "runs"))                     # studies that train: runs here
    data = compute(cfg, np.random.default_rng(0), quick=True)
    stem = str(tmp_path / name)
    figures.save_data(data, stem, meta={"config": cfg, "command": ["--fig", name, "--quick"]})
    assert sorted(set(os.listdir(tmp_path)) - {"runs"}) == [f"{name}.json"]   # one text file, no temporaries
    assert_same(figures.load_data(stem), data)
    fig = plot(figures.load_data(stem))
    assert isinstance(fig, Figure)
    png, pdf = figures.save_figure(fig, stem)
    assert (png, pdf) == (stem + ".png", stem + ".pdf")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(pdf, "rb") as f:
        content = f.read()
    assert content.startswith(b"%PDF") and b"/FontFile2" in content and b"/Type3" not in content


@pytest.mark.parametrize("name", ["3", "4"])
def test_same_seed_same_numbers(name):
    compute, _, model = figures.FIGURES[name]
    cfg = figures.FigConfig(data_dir=data_dir_or_skip("mnist") if name == "3" else None, model=model)
    a, b = (compute(cfg, np.random.default_rng(7), quick=True) for _ in range(2))
    assert_same(a, b)
    c = compute(cfg, np.random.default_rng(8), quick=True)
    key = "f" if name == "3" else "density_continuous"
    assert not np.array_equal(a[key], c[key])


def test_fig4_statistics_match_the_inverse_gaussian():
    """Wald(mu = 2, lambda = 1) has mean mu and variance mu^3 / lambda = 8, so 50 + Wald has mean 52;
    the code's 50 + int(Wald) is under 60 ms exactly when Wald < 10 (scipy's invgauss(mu / lambda,
    scale=lambda) is the same law). Tolerances: 5 standard errors of the sample size."""
    d = figures.fig4(figures.FigConfig(model=sdnn.PAPER), np.random.default_rng(1), quick=True)
    n = d["n"]
    assert abs(d["mean_continuous_ms"] - 52.0) < 5 * math.sqrt(8 / n)
    assert abs(d["sd_continuous_ms"] - math.sqrt(8)) < 0.1 * math.sqrt(8)
    p = stats.invgauss(2.0, scale=1.0).cdf(10.0)
    assert abs(d["fraction_truncated_50_to_60"] - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert d["fraction_truncated_50_to_60"] + d["fraction_truncated_ge_60"] == 1.0
    assert d["mean_truncated_ms"] < d["mean_continuous_ms"]                        # int() floors
    for kind in ("continuous", "truncated"):                                        # densities integrate to 1
        assert math.isclose(np.sum(d[f"density_{kind}"] * np.diff(d[f"edges_{kind}"])), 1.0)


REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference")
DRAWN = {**{f"fig{n}": plot for n, (_, plot, _) in figures.FIGURES.items()},
         **{n: plot for n, (_, plot, _) in studies.STUDIES.items()}}


@pytest.mark.parametrize("stem", sorted(s[:-5] for s in os.listdir(REFERENCE) if s[:-5] in DRAWN and s.endswith(".json")))
def test_every_committed_reference_redraws_with_todays_code(stem):
    """--replot falls back to reference/: each committed figure or study JSON (saved by the code of its
    day) loads and draws with the current plot function."""
    assert isinstance(DRAWN[stem](figures.load_data(os.path.join(REFERENCE, stem))), Figure)


def test_load_data_of_a_missing_stem_says_what_to_do(tmp_path):
    stem = str(tmp_path / "fig9")
    with pytest.raises(FileNotFoundError, match=r"fig9\.json.*run without --replot first"):
        figures.load_data(stem)


def test_save_data_rejects_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="top level"):
        figures.save_data({"nested": [np.zeros(3)]}, str(tmp_path / "x"), meta={})


def test_bench_sdnn_reports_ranges_and_the_reference_phase(monkeypatch):
    """The speed-up over the original code is a range (its lowest and highest measured times), and a
    reference_phase in sdnn is timed against the kernel."""
    calls = []
    monkeypatch.setattr(figures.sdnn, "reference_phase", lambda *a: calls.append(a[2]), raising=False)
    train_s, test_s = 1e-3, 2e-3                                   # 1 ms per training example, 2 ms per test
    out = studies._vs_original_code("784-500-10", train_s, test_s, 500)
    assert out["speedup_vs_original_train"] == pytest.approx([16.0, 20.8])
    assert out["speedup_vs_original_test_per_ms"] == pytest.approx([42.6 / 250 / (2 / 500), 56.4 / 250 / (2 / 500)])
    net = sdnn.init_weights(784, sdnn.PAPER, np.random.default_rng(0))
    X = np.random.default_rng(1).random((2, 784)).astype(np.float32) * 0.5
    out = studies._in_run_references(net, sdnn.init_state(net), X, np.array([3, 5]), sdnn.PAPER,
                                     np.random.default_rng(2), True, train_s, test_s)
    assert calls == [500, 500] and out["numpy_twin_ms_per_train_example"] > 0
    assert out["reference_over_kernel_test"] == pytest.approx(out["reference_ms_per_test_example"] / 2)


def test_kh_fields_say_how_many_are_unconverged():
    """Rows of W built with known l2 norms (30 at 1, 70 at 3; then 90 at 1): the figure and its line name
    the unconverged count, 'most' when they are the majority, and the demo notebook's 200 epochs when fewer ran."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((100, 64))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    W = rows * np.r_[np.ones(30), 3 * np.ones(70)][:, None]
    assert figures.kh_unconverged(W, 2.0) == 70
    data = {"W": W, "epochs_unsup": 10, "n_images": 1000, "dataset": "digits", "p": 2.0, "k": 2}
    title = figures.plot_kh_fields(data).axes[0].get_title()
    assert "most fields are unconverged after 10 of the demo notebook's 200 epochs (70 of 100 units" in title
    W[:90] = rows[:90]
    assert figures.kh_verdict(figures.kh_unconverged(W, 2.0), 100, 200) == (
        "at least 10 of 100 fields are unconverged (10 of 100 units have not reached norm 1)")
    assert figures.kh_verdict(0, 100, 10) == "all 100 units have reached norm 1 after 10 of the demo notebook's 200 epochs"


def test_ttests_pair_the_networks_of_the_same_seed_and_match_the_pooled_t():
    """Seed 0 failed in one condition: the t-test compares seed 1 with seed 1 (not seed 0 with seed 1), and
    its t is the pooled two-sample t computed by hand; Bonferroni multiplies p by the panel's comparisons."""
    rng = np.random.default_rng(0)
    r = {0: list(rng.normal(4.0, 0.1, 20)), 1: list(rng.normal(3.56, 0.1, 20))}
    q1 = list(rng.normal(3.5, 0.1, 20))
    c = {"a": {"seeds": [0, 1], "retests": [r[0], r[1]]}, "b": {"seeds": [1], "retests": [q1]}}
    rows = figures.ttests(c, [("a", "b"), ("b", "a")])
    assert rows[0]["seeds"] == [1] and len(rows[0]["ours"]) == 1
    x, y = np.array(r[1]), np.array(q1)
    sp = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
    t = (x.mean() - y.mean()) / (sp * math.sqrt(1 / len(x) + 1 / len(y)))
    p = 2 * stats.t.sf(abs(t), len(x) + len(y) - 2)
    assert rows[0]["ours"][0][0] == pytest.approx(t, rel=1e-9) and rows[1]["ours"][0][0] == pytest.approx(-t, rel=1e-9)
    assert 1e-6 < p < 0.5 and rows[0]["ours"][0][1] == pytest.approx(min(1.0, 2 * p), rel=1e-6)
    fig = Figure()
    figures.plot_retests(fig.add_subplot(), c, rows)      # draws seed 0's box for a, b's own seed 1
    assert "seed 0" in fig.axes[0].get_title() and "seed 1;" in fig.axes[0].get_title()
    for row in rows:                                      # the rows of figures saved before "seeds" existed
        del row["seeds"]
    figures.plot_retests(Figure().add_subplot(), c, rows)


def test_all_runs_holds_every_figures_runs_once_the_longest_first():
    """--fig all's list: exactly the distinct runs of the figures' conditions (a shared run once), started
    by run_all by epochs x synapses: the 60-epoch 784-500-100-10 runs first, then 784-500-10's 60, 20 and 10 epochs, and
    784-10 last."""
    cfg = figures.FigConfig(runs="runs")
    import experiments
    runs = sorted(figures.all_runs(cfg, quick=False), key=lambda a: -experiments.run_cost(a))   # run_all's order
    every = {tuple(a) for conds in figures._conditions().values() for a in figures.run_argvs(cfg, False, conds)[0]}
    assert len(runs) == len(set(runs)) and set(runs) == every
    epochs = [int(a[a.index("--epochs") + 1]) for a in runs]
    i = runs[0].index("--hidden")
    assert runs[0][i + 1:i + 4] == ("500", "100", "--retests") and epochs[0] == 60
    j = runs[-1].index("--hidden")
    assert runs[-1][j + 1] == "--retests"                    # 784-10: 60 epochs of 7,840 synapses, the shortest
    assert max(k for k, e in enumerate(epochs) if e == 20) < min(k for k, e in enumerate(epochs) if e == 10)


def test_only_the_runs_fig5_reads_pay_for_the_diagnostics():
    """--diagnose adds a pass over the test set to every epoch: Fig 5's runs have it, no other run does."""
    cfg = figures.FigConfig(runs="runs")
    fig5 = {tuple(a) for a in figures.run_argvs(cfg, False, figures._conditions()["5"])[0]}
    assert fig5 and all("--diagnose" in a for a in fig5)
    assert all("--diagnose" not in a for a in figures.all_runs(cfg, quick=False) if tuple(a) not in fig5)


def test_suite_time_schedules_one_seeds_runs_longest_first_on_two_cores():
    """Hand-computed: runs of 3 h (one epoch slowed 25x by other jobs: the median ignores it), 1.5 h (no
    timed start: one test's time is added) and the backprop twin's 2 h (seed 100); seed 1 and a failed run
    are left out. Longest first on 2 cores: 3 h | 2 h + 1.5 h, so 3.5 h, and 6.5 core-hours."""
    run = lambda seed, spe, ev, **kw: {"seed": seed, "epochs": len(spe), "seconds_per_epoch": spe,
                                        "eval_seconds_per_epoch": ev, **kw}
    results = [run(0, [3000, 3000, 90000], [600, 600, 600], start_seconds=0, finish_seconds=0),
               run(0, [1800], [1800]),
               run(100, [2700, 2700], [900, 900], start_seconds=0, finish_seconds=0),
               run(1, [9e9], [0]), {"error": "crashed"}]
    text = figures.suite_time(results, seed=0)
    assert "3 finished runs, 6.5 core-hours; 3.5 h on 2 cores" in text


def test_by_quartile_averages_the_angles_within_each_quarter_of_the_losses():
    """Losses 1..8 in a shuffled order, angles 10x and 100x the loss: quartiles {1, 2}, {3, 4}, {5, 6},
    {7, 8}, means by hand."""
    loss = np.array([5, 2, 8, 1, 7, 3, 6, 4], float)
    q = figures.by_quartile(np.column_stack([loss, 10 * loss, 100 * loss]))
    np.testing.assert_allclose(q, [[15, 150], [35, 350], [55, 550], [75, 750]])


@pytest.mark.parametrize("spiking", [True, False])
def test_angle_by_loss_averages_the_errors_of_the_angle_over_draws_and_leaves_the_weights(spiking):
    """Rows against the same draws made by hand (same rng, one state carried on): each draw's errors give its
    angle; column 1 is the mean of the draws' angles, column 2 the arccos of the normalised product of the
    mean errors. Spiking draws differ, so averaging changes the angle; rate mode is deterministic, so it
    does not. No weight changes (rate mode with symmetric feedback included)."""
    X, y = datasets.load("digits")["train"]
    cfg = replace(sdnn.PAPER, hidden=(30,), spiking=spiking, symmetric_feedback=not spiking)
    net = sdnn.init_weights(64, cfg, np.random.default_rng(0))
    before = [w.copy() for w in net.W + net.b + net.Y]
    rows = figures.angle_by_loss(net, cfg, X[:6], y[:6], np.random.default_rng(1), draws=3)
    rng, state = np.random.default_rng(1), sdnn.init_state(net)
    for row, x, t in zip(rows, X[:6], y[:6]):
        d = [sdnn.train_example(net, state, x, t, cfg, rng, jit=False, update=False) for _ in range(3)]
        for i in d:
            assert sdnn._angle(i["E0"], i["E0_bp"]) == pytest.approx(i["angle"])
        a, b = sum(i["E0"] for i in d) / 3, sum(i["E0_bp"] for i in d) / 3
        cos = a @ b / np.sqrt((a @ a) * (b @ b))
        assert row == pytest.approx([np.mean([i["L1"] for i in d]), np.mean([i["angle"] for i in d]),
                                     math.degrees(math.acos(cos))])
    assert np.allclose(rows[:, 2], rows[:, 1]) != spiking
    for a, b in zip(before, net.W + net.b + net.Y):
        np.testing.assert_array_equal(a, b)


def test_angle_summary_reads_the_dip_the_end_of_epoch_1_and_the_last_epoch():
    """Hand-made curves of 2 epochs x 20 blocks: 80 degrees, a dip to 50 over 10 blocks of epoch 1 (the
    lowest mean of 1,000 examples), 60 in its last 2 blocks (a tenth), 70 throughout epoch 2; two seeds
    5 degrees apart give the means."""
    a = np.full(40, 80.0)
    a[5:15], a[18:20], a[20:] = 50.0, 60.0, 70.0
    low, first, end = figures.angle_summary(np.array([a - 2.5, a + 2.5]), per_epoch=20)
    assert (low, first, end) == pytest.approx((50.0, 60.0, 70.0))
