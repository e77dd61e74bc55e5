"""The comparison studies (studies.py): FLOPs counted from the code against a hand count, the plausibility
marks of every rule, the angle and CKA measures against known cases, and the datasets protocol."""
import math

import numpy as np
import pytest

import baselines as bl
import experiments
import figures
import studies

# ------------------------------------------------------------------------------------------------ complexity

def bp_flops_by_hand(n0, n1, n2, B):
    """One SGD step of BP on an n0-n1-n2 ReLU network with softmax + cross-entropy, batch B, counted term
    by term as baselines.step computes it: 2 m k n per (m, k) @ (k, n), one per element of any other
    operation, n - r to reduce n numbers to r. Returns (FLOPs of the step, FLOPs of its matrix products)."""
    matmul = (2 * B * n1 * n0 + 2 * B * n2 * n1      # forward: x W1^T, h1 W2^T
              + 2 * B * n1 * n2                      # backward: e W2
              + 2 * n1 * B * n0 + 2 * n2 * B * n1)   # gradients: delta1^T x, delta2^T h1
    other = (B * n1 + B * n1                         # + b1, ReLU max(a, 0)
             + B * n2                                # + b2
             + (B * n2 - B) + B * n2 + B * n2 + (B * n2 - B) + B * n2   # softmax: max, -, exp, sum, /
             + B * n2 + B * n2                       # e = (y - t) / B
             + B * n1 + B * n1                       # ReLU derivative (h > 0), times it
             + (B - 1) * n1 + (B - 1) * n2           # bias gradients: sums over the batch
             + 2 * (n1 * n0 + n1 + n2 * n1 + n2)     # SGD: s = lr g, p -= s, on every parameter
             + 3 * B * n2 + (B * n2 - B) + (B - 1))  # the returned loss: max(y, 1e-30), log, t *, two sums
    return matmul + other, matmul


@pytest.mark.parametrize("B", [1, 3])
def test_bp_flops_match_a_hand_count(B):
    n0, n1, n2 = 3, 4, 2
    cfg = bl.Config(sizes=(n0, n1, n2), optimizer="sgd", dtype="float64")
    rng = np.random.default_rng(0)
    params, opt = bl.make("bp", cfg, rng)
    x, t = rng.random((B, n0)), bl.one_hot(rng.integers(0, n2, B), n2, np.float64)
    W_before = params["W"][0].copy()
    counted = studies.count_flops(lambda p, o: bl.step("bp", p, o, x, t, cfg), params, opt)
    assert counted == bp_flops_by_hand(n0, n1, n2, B)[0]
    assert not np.array_equal(params["W"][0], W_before)          # the views updated the real weights
    # the matrix products alone, for 784-500-10 and a batch of 100: forward 2P, backward to the hidden
    # layer 2 * 500 * 10, gradients 2P, with P = 784 * 500 + 500 * 10 weights
    P = 784 * 500 + 500 * 10
    assert bp_flops_by_hand(784, 500, 10, 100)[1] == 100 * (4 * P + 2 * 500 * 10)


def test_counted_arrays_count_products_reductions_and_in_place_updates():
    a = np.ones((2, 3))
    assert studies.count_flops(lambda v: v @ v.T, a) == 2 * 2 * 2 * 3
    assert studies.count_flops(lambda v: v.sum(axis=1), a) == 2 * (3 - 1)
    assert studies.count_flops(lambda v: np.exp(v) + 1, a) == 6 + 6
    b = np.zeros(4)
    assert studies.count_flops(lambda v: v.__iadd__(2.0), b) == 4 and np.all(b == 2)   # in place, on b itself
    assert studies.count_flops(lambda v: v.astype(np.float32)[1:] * 2, b) == 3            # copies are free


def test_train_flops_of_bp_at_784_500_10_are_the_hand_count():
    """The study's own path (the trainer of `--train bp`, two minibatches of 100, Adam) against the hand
    count: the matrix products exactly as above, and Adam's 12 operations per parameter on top."""
    rng = np.random.default_rng(0)
    x, y = rng.random((400, 784)).astype(np.float32), rng.integers(0, 10, 400)
    data = studies._split(x, y, 200, 100)
    trainer = studies._trainer("bp", data, rng)
    flops = studies.train_flops("bp", trainer, data, rng)
    P, B = 784 * 500 + 500 * 10, 100
    hand = bp_flops_by_hand(784, 500, 10, B)[0] - 2 * (P + 510)    # without the SGD update ...
    adam = 12 * (P + 510)                                           # ... with Adam's (baselines.update)
    assert flops == pytest.approx((hand + adam) / B, rel=1e-12)


def test_plausibility_marks_cover_every_rule_with_reasons():
    rows = studies.plausibility_rows()
    assert set(rows) == set(experiments.TRAINERS)                  # one row per rule that can be trained
    for rule, marks in rows.items():
        assert set(marks) == set(bl.PROPERTIES) | {"backward_steps"}
        assert all(len(reason) > 15 for _, reason in marks.values()), rule
    steps = {rule: studies.backward_steps(marks, 5) for rule, marks in rows.items()}
    assert steps["bp"] == steps["fa"] == 5 and steps["dfa"] == steps["sdnn"] == 1 and steps["kh"] == 0
    table = studies.complexity_tables({"rows": {}, "plausibility": rows, "properties": bl.PROPERTIES})
    assert table["plausibility"].count("\n") == len(rows) + 1
    with pytest.raises(ValueError, match="PLAUSIBILITY\\['x'\\]: .*maybe"):
        bad = dict(rows["bp"], exact_gradients=("maybe", "not a mark"))
        studies.check_marks({"x": bad})


def test_memory_scales_eqprop_particles_to_the_training_set():
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 784)).astype(np.float32), rng.integers(0, 10, 300)
    data = studies._split(x, y, 100, 100)
    mem = studies.memory("eqprop", studies._trainer("eqprop", data, rng), 50_000)
    assert mem["activity_state"] == 50_000 * (500 + 10) * 4                  # float32 particles, one per example
    assert mem["weights"] == 4 * (784 * 500 + 500 + 500 * 10 + 10)


# ------------------------------------------------------------------------------------------------ dynamics

def test_angle_of_hand_computed_vectors():
    assert studies.angle_deg([1, 0], [1, 1]) == pytest.approx(45)
    assert studies.angle_deg([[1, 2], [3, 4]], [[-1, -2], [-3, -4]]) == pytest.approx(180)
    assert math.isnan(studies.angle_deg([0, 0], [1, 1]))


def fa_network(n_hidden, seed=0):
    rng = np.random.default_rng(seed)
    cfg = bl.Config(sizes=(50, n_hidden, 10), dtype="float64")
    params, _ = bl.make("fa", cfg, rng)
    x, t = rng.random((200, 50)), bl.one_hot(rng.integers(0, 10, 200), 10, np.float64)
    return params, x, t, cfg


def test_fa_with_feedback_equal_to_the_forward_weights_is_backprop():
    params, x, t, cfg = fa_network(64)
    params["B"][1] = params["W"][1].copy()                         # B = W: exact weight transport
    assert studies.update_angles("fa", params, x, t, cfg) == [pytest.approx(0, abs=1e-5)]
    assert studies.angle_deg(*studies.feedback_pairs("fa", {"params": params})[0]) == pytest.approx(0, abs=1e-5)


def test_random_feedback_is_orthogonal_in_high_dimension():
    """An independent random B: the hidden errors e B and e W are independent random projections, so the
    updates' cosine is of order 1 / sqrt(n_hidden) (here 0.01): the angle is 90 degrees within a degree
    or two; a pair of independent Gaussian vectors in 10^5 dimensions likewise (SD of the cosine 0.003)."""
    params, x, t, cfg = fa_network(10_000)
    assert studies.update_angles("fa", params, x, t, cfg)[0] == pytest.approx(90, abs=3)
    assert studies.angle_deg(*studies.feedback_pairs("fa", {"params": params})[0]) == pytest.approx(90, abs=2)
    rng = np.random.default_rng(1)
    assert studies.angle_deg(rng.normal(size=100_000), rng.normal(size=100_000)) == pytest.approx(90, abs=1)


def cka_by_kernels(X, Y):
    """CKA in its kernel form (Kornblith et al. 2019, Eqs. 3-4): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    with K = X X^T, L = Y Y^T and HSIC(K, L) = tr(K H L H), H the centring matrix."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda K, L: np.trace(K @ H @ L @ H)
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_of_known_cases():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 20)) @ rng.normal(size=(20, 20))    # correlated features
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))                 # an orthogonal matrix
    assert studies.linear_cka(X, X) == pytest.approx(1)
    assert studies.linear_cka(X, 3 * X @ Q + 5) == pytest.approx(1)        # rotation, scale, shift
    # independent noise: E[CKA] ~ sqrt(p q) / n = 20 / 5000
    assert studies.linear_cka(X, rng.normal(size=(5000, 20))) < 0.02
    A, B = rng.normal(size=(60, 7)), rng.normal(size=(60, 4))
    B[:, 0] += A[:, 0]
    assert studies.linear_cka(A, B) == pytest.approx(cka_by_kernels(A, B))   # the kernel form agrees


def run_json(tmp_path, *argv):
    import json
    import subprocess
    import sys
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
    r = subprocess.run([sys.executable, experiments.__file__, *argv, "--dataset", "digits", "--quiet", "--json",
                        str(out), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_dynamics_of_backprop_against_its_twin_and_the_run_unchanged(tmp_path):
    """--dynamics on BP: the twin is the same network trained the same way, so every angle is 0 and every
    CKA 1; epoch 1 is measured in 10 blocks (and at the start); the run's errors are those of the same
    command without --dynamics."""
    argv = ["--train", "bp", "--hidden", "32", "--epochs", "2"]
    with_dyn, without = run_json(tmp_path, *argv, "--dynamics"), run_json(tmp_path, *argv)
    assert with_dyn["test_error"] == without["test_error"] and with_dyn["val_error"] == without["val_error"]
    points = [p for epoch in with_dyn["dynamics"] for p in epoch]
    assert [p["examples"] for p in points] == [0, *range(100, 1001, 100), 2000]
    for p in points:
        assert p["angle_bp"] == [pytest.approx(0, abs=1e-4)]                            # degrees
        assert p["feedback_angle"] == [pytest.approx(0, abs=1e-4)]
        assert p["cka_bp_twin"] == [pytest.approx(1)]
    assert points[0]["dW_norm"] == [0.0, 0.0] and all(d > 0 for d in points[-1]["dW_norm"])


def test_dynamics_refuses_a_linear_sdnn_schedule():
    none = np.zeros((0, 64))
    data = experiments.Split(np.zeros((100, 64)), np.zeros(100, int), none, none, none, np.zeros(1, int), 10)
    args = experiments.parse(["--train", "sdnn", "--hidden", "8", "--set", "etas=0.1,0.1", "eta_schedule=linear"])
    trainer = experiments.TRAINERS["sdnn"](args, data, np.random.default_rng(0))
    with pytest.raises(ValueError, match="eta_schedule=linear"):
        studies.with_dynamics("sdnn", trainer, data, 0)


# ------------------------------------------------------------------------------------------------ protocol

def fake_runs(curves):
    """A stand-in for experiments.run_all: each --train command gets the curves curves(argv) -> (val, test)
    (errors per epoch, fractions), as a finished run's JSON would hold them."""
    def run_all(argvs, workers=None, quiet=False, scheduler=None):
        out = []
        for argv in argvs:
            val, test = curves(argv)
            seed = int(argv[argv.index("--seed") + 1])
            out.append({"rule": argv[1], "seed": seed, "epochs": len(val), "val_error": val, "test_error": test,
                        "train_error": val, "seconds_per_epoch": [60.0] * len(val),
                        "eval_seconds_per_epoch": [0.0] * len(val), "command": argv, "finished": True})
        return out
    return run_all


def test_protocol_picks_the_rate_by_validation_and_reads_the_test_error_there(monkeypatch, tmp_path):
    """Three candidate rates; the middle one has the lowest validation error (at epoch 2 of 3). Its three
    seeds are run (seed 0 is the tuning run, run again here by the stand-in), and each seed's test error
    is read at its own lowest-validation epoch, never at the lowest test error."""
    def curves(argv):
        lr = float(next(a for a in argv if a.startswith("lr=")).split("=")[1])
        seed = int(argv[argv.index("--seed") + 1])
        if lr == pytest.approx(1e-3):
            val = [0.30, 0.10 + 0.01 * seed, 0.20]
            return val, [0.05, 0.12 + 0.01 * seed, 0.01]         # the test minimum (epoch 3) must be ignored
        return [0.5, 0.4, 0.3], [0.5, 0.4, 0.3]
    monkeypatch.setattr(experiments, "run_all", fake_runs(curves))
    cfg = figures.FigConfig(runs=str(tmp_path))
    out = studies.protocol(cfg, False, {"bp": ("bp", [], (500,))}, ["mnist"], 3, 3, studies.LR_FACTORS)["bp"]["mnist"]
    assert out["factor"] == 1.0 and out["setting"] == "lr=0.001"
    assert [c["lowest_val_error"] for c in out["candidates"]] == pytest.approx([30, 10, 30])
    assert out["test_at_best_val"] == pytest.approx([12, 13, 14]) and out["best_epoch"] == [2, 2, 2]
    assert out["mean"] == pytest.approx(13) and out["sd"] == pytest.approx(1)        # SD with ddof=1
    assert out["curves"]["val"] == pytest.approx([30, 11, 20])
    assert out["budget"] == {"runs": 5, "epochs": 15, "minutes": 15.0, "tuning_minutes": 9.0}


def test_protocol_reads_a_reused_longer_run_only_up_to_the_epochs_asked(monkeypatch, tmp_path):
    """Every run was trained for 5 epochs by an earlier, longer command (its name leaves the epochs out):
    a 3-epoch protocol must choose, read the test error and count the budget on epochs 1-3 only, as if the
    runs had stopped there (their lowest validation error, at epoch 5, is past the protocol's end)."""
    def curves(argv):
        seed = int(argv[argv.index("--seed") + 1])
        return [0.30, 0.20, 0.25, 0.22, 0.01], [0.40, 0.10 + 0.01 * seed, 0.30, 0.30, 0.90]
    monkeypatch.setattr(experiments, "run_all", fake_runs(curves))
    cfg = figures.FigConfig(runs=str(tmp_path))
    out = studies.protocol(cfg, False, {"bp": ("bp", [], (500,))}, ["mnist"], 3, 2, (1.0,))["bp"]["mnist"]
    assert [c["lowest_val_error"] for c in out["candidates"]] == pytest.approx([20])
    assert out["best_epoch"] == [2, 2] and out["test_at_best_val"] == pytest.approx([10, 11])
    assert out["minutes_to_best"] == pytest.approx([2.0, 2.0]) and out["curves"]["val"] == pytest.approx([30, 20, 25])
    assert out["budget"] == {"runs": 2, "epochs": 6, "minutes": 6.0, "tuning_minutes": 3.0}


def test_runs_start_longest_first_and_come_back_in_the_callers_order(monkeypatch, tmp_path):
    """experiments.run_all launches the spiking sdnn run first and BP's last (per example 25x BP's; KH's
    unsupervised epochs count; 784-2000-10 has 4x the synapses of 784-500-10) and returns each result at
    its command's place."""
    import executor
    launched = []

    def run_local(todo, workers, quiet):
        launched.extend(a[1] + (a[a.index("--preset") + 1] if "--preset" in a else "") for _, a in todo)
        return {p: "not run" for p, _ in todo}
    monkeypatch.setattr(executor, "run_local", run_local)
    argvs = [["--train", "bp", "--hidden", "500", "--epochs", "20"],
             ["--train", "kh", "--hidden", "2000", "--epochs", "20", "--set", "epochs_unsup=40"],
             ["--train", "sdnn", "--hidden", "500", "--preset", "rate", "--epochs", "20"],
             ["--train", "sdnn", "--hidden", "500", "--epochs", "20", "--preset", "paper"]]
    argvs = [a + ["--dataset", "digits", "--out", str(tmp_path)] for a in argvs]
    results = experiments.run_all(argvs, quiet=True)
    assert [r["command"] for r in results] == argvs
    assert launched == ["sdnnpaper", "kh", "sdnnrate", "bp"]       # costs 25 x 20, 1 x 60 x 4, 2 x 20, 1 x 20


def test_first_epochs_cuts_a_longer_run_and_its_later_flags():
    """A run that diverged in its 6th epoch (5 logged) read for 3 epochs: the lists cut at 3 and not diverged
    (its first 3 epochs were fine); read for 5 or more: unchanged. The cost of a CIFAR-10 run counts its
    3,072 inputs."""
    r = {"epochs": 5, "diverged": True, "stuck_at_chance": True, "seed": 0,
         **{k: [0.1 * i for i in range(5)] for k in ("train_error", "val_error", "test_error", "seconds_per_epoch",
                                                    "eval_seconds_per_epoch")}}
    cut = studies._first_epochs(r, 3)
    assert cut["epochs"] == 3 and cut["val_error"] == pytest.approx([0, 0.1, 0.2]) and not cut["diverged"]
    assert "stuck_at_chance" not in cut and cut["seed"] == 0 and r["epochs"] == 5     # the original untouched
    assert studies._first_epochs(r, 5) is r and studies._first_epochs({"error": "x"}, 1) == {"error": "x"}
    assert experiments.run_cost(["--train", "bp", "--dataset", "cifar10", "--hidden", "500", "--epochs", "2"]) \
        == 2 * (3072 * 500 + 500 * 10)


def test_dynamics_reads_a_reused_longer_run_only_up_to_its_epochs(monkeypatch):
    """Every rule's run was trained for 3 epochs by an earlier command; the 2-epoch study shows epochs 1-2:
    epoch 1's two blocks and epoch 2's point, and two test errors."""
    def point(n):
        return {"examples": n, "angle_bp": [80.0], "feedback_angle": [45.0], "cka_bp_twin": [0.5]}

    def run_all(argvs, workers=None, quiet=False, scheduler=None):
        return [{"dynamics": [[point(0), point(50)], [point(100)], [point(200)]], "test_error": [0.3, 0.2, 0.1],
                 "command": a} for a in argvs]
    monkeypatch.setattr(experiments, "run_all", run_all)
    out = studies.dynamics(figures.FigConfig(runs="runs", epochs=2), np.random.default_rng(0), False)
    for r in out["rules"].values():
        assert r["examples"] == [0, 50, 100] and r["test_error"] == [0.3, 0.2]


def test_every_rule_has_a_rate_to_tune():
    for entry in studies.COMPARED:
        item = studies.rate_setting(entry, 3.0)
        args = experiments.parse(studies._rule_argv(entry) + ["--set", item, *studies.BASE_SETTINGS.get(entry, [])])
        field, base = studies.RATE_FIELD[entry]
        assert item == f"{field}=" + ",".join(f"{3 * r:.4g}" for r in base) and args.set[0] == item


def test_every_own_architecture_command_builds_its_rule_with_its_settings(monkeypatch):
    """Each published-architecture run of the datasets study parses and builds its rule (a --set item a
    Config does not know, or an empty --set, would fail the run hours into the study), with the settings
    of OWN_ARCHITECTURE in the rule's config: sdnn's is the MARCH_2017 preset's."""
    import dataclasses

    import sdnn
    none = np.zeros((0, 784))
    data = experiments.Split(np.zeros((100, 784)), np.zeros(100, int), none, np.zeros(0, int), none,
                             np.zeros(0, int), 10)
    cfg = figures.FigConfig(runs="runs")
    argvs = []
    monkeypatch.setattr(studies, "_run_all", lambda a, c: argvs.extend(a) or [])
    studies.own_architectures(cfg, list(studies.OWN_ARCHITECTURE), 1)
    assert [studies._rule_argv(e, h)[1] for e, (h, *_) in studies.OWN_ARCHITECTURE.items()] == [a[1] for a in argvs]
    for argv, (entry, (hidden, items, epochs, *_)) in zip(argvs, studies.OWN_ARCHITECTURE.items()):
        args = experiments.parse(argv)
        trainer = experiments.TRAINERS[args.train](args, data, np.random.default_rng(0))
        assert args.epochs == epochs and args.hidden == hidden and args.dataset == "mnist", entry
        for item in items:
            key, _, value = item.partition("=")
            got = trainer.config[key]
            want = [float(v) for v in value.split(",")] if isinstance(got, (list, tuple)) else type(got)(value)
            assert (list(got) if isinstance(got, (list, tuple)) else got) == pytest.approx(want), (entry, item)
    march = experiments.parse(argvs[list(studies.OWN_ARCHITECTURE).index("sdnn:march_2017")])
    config = experiments.TRAINERS["sdnn"](march, data, np.random.default_rng(0)).config
    expected = dataclasses.asdict(sdnn.with_hidden(sdnn.MARCH_2017, (500,)))
    keys = ("init_spread", "feedback_init", "psp", "etas")
    assert [config[k] if isinstance(config[k], str) else np.ravel(config[k]).tolist() for k in keys] == \
        [expected[k] if isinstance(expected[k], str) else np.ravel(expected[k]).tolist() for k in keys]


def test_datasets_study_reads_each_published_architecture_at_its_lowest_validation_epoch(monkeypatch, tmp_path):
    """The full study's second table (stand-in runs): the published-architecture runs of the compared
    rules only (sdnn's entries bring sdnn's own network), 3 seeds each, the test error at each seed's
    lowest-validation epoch beside the published number, SD with ddof=1."""
    def curves(argv):
        seed = int(argv[argv.index("--seed") + 1])
        epochs = int(argv[argv.index("--epochs") + 1])
        val = [0.5] * epochs
        val[1] = 0.1                                          # lowest validation error at epoch 2
        test = [0.3] * epochs
        test[1] = 0.02 + 0.01 * seed
        return val, test
    monkeypatch.setattr(experiments, "run_all", fake_runs(curves))
    cfg = figures.FigConfig(runs=str(tmp_path))
    out = studies.datasets_study(cfg, None, quick=False, entries=("bp", "sdnn:rate"))
    assert set(out["own"]) == {"bp", "sdnn:march_2017"}
    bp = out["own"]["bp"]
    assert bp["test_error"] == pytest.approx([2, 3, 4]) and bp["mean"] == pytest.approx(3)
    assert bp["sd"] == pytest.approx(1) and bp["published"] == 1.48 and bp["sizes"] == "784-256-256-256-256-256-10"
    assert "--preset march_2017" in out["own"]["sdnn:march_2017"]["command"]
    assert "--out" not in bp["command"] and "ema=0.9998" in bp["command"]


def test_sdnns_published_architecture_is_fig6s_run_on_the_papers_protocol(monkeypatch):
    """sdnn's row of the published-architecture table trains the run of Fig 6's 784-500-10 (the same run
    file: a figure run under the same --out is reused, not trained again) and reads the mean of its final
    re-tests, as the paper; a run with a validation split is read at its lowest-validation epoch."""
    from conftest import data_dir_or_skip
    data_dir_or_skip("mnist")
    cfg = figures.FigConfig(runs="runs", seeds=2)
    argvs = []
    monkeypatch.setattr(studies, "_run_all", lambda a, c: argvs.extend(a) or [])
    studies.own_architectures(cfg, ["sdnn:march_2017"], 2)
    fig6 = [a for a, label in zip(*figures.run_argvs(cfg, False, figures._conditions()["6"])) if label == "784-500-10"]
    assert list(map(experiments.run_path, argvs)) == list(map(experiments.run_path, fig6))
    paper = {"n_valid": 0, "test_retests": [0.03, 0.05], "val_error": [None] * 3, "test_error": [0.09, 0.08, 0.07]}
    assert studies._own_error(paper) == pytest.approx(4.0)
    split = {"n_valid": None, "test_retests": [0.03, 0.05], "val_error": [0.3, 0.1, 0.2], "test_error": [0.09, 0.08, 0.07]}
    assert studies._own_error(split) == pytest.approx(8.0)


def test_datasets_table_marks_a_choice_at_the_grids_edge():
    """A cell whose validation choice is the grid's lowest or highest rate gets a dagger and the table its
    note; a choice inside the grid, and the one-rate grid of --quick, get none."""
    def result(factor):
        return {"factor": factor, "mean": 2.0, "sd": 0.1, "budget": {"epochs": 100, "minutes": 10.0}}
    data = {"status": {"mnist": "run", "fashion_mnist": "run"}, "factors": [1 / 3, 1.0, 3.0], "own": {},
            "table": {"bp": {"mnist": result(1.0), "fashion_mnist": result(1.0)},
                      "kh": {"mnist": result(3.0), "fashion_mnist": result(1 / 3)}}}
    table = studies.datasets_tables(data)["datasets"]
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert rows["| bp"].count("†") == 0 and rows["| kh"].count("2.00 ± 0.10 †") == 2
    assert table.endswith(studies.EDGE_NOTE)
    data["table"].pop("kh")
    assert "†" not in studies.datasets_tables(data)["datasets"]
    assert studies.at_edge(result(1.0), [1.0]) == "" and studies.at_edge({"failed": "x"}, [1 / 3, 1, 3]) == ""


def test_own_architecture_table_gives_the_difference_to_the_published_number():
    """The published-architecture table states ours minus published, signed, per rule (hand values)."""
    own = {"bp": {"sizes": "784-256-10", "epochs": 60, "mean": 1.76, "sd": 0.05, "published": 1.48, "source": "B"},
           "dfa": {"sizes": "784-256-10", "epochs": 40, "mean": 1.95, "sd": 0.05, "published": 2.75, "source": "B"}}
    table = studies.datasets_tables({"status": {}, "factors": [1.0], "own": own, "table": {}})["own_architecture"]
    assert "| bp | 784-256-10 | 60 | 1.76 ± 0.05 | 1.48 | +0.28 | B |" in table
    assert "| dfa | 784-256-10 | 40 | 1.95 ± 0.05 | 2.75 | -0.80 | B |" in table


def synthetic_cifar(tmp_path, monkeypatch, n=1010):
    """CIFAR-10 files in the canonical format (pickled batches of uint8 R, G, B planes), n images per batch:
    5 x n training images, of which the last 5,000 validate; their md5s made the expected ones."""
    import hashlib

    from test_datasets import cifar_batches, write_cifar

    import datasets
    blobs, _ = cifar_batches(np.random.default_rng(0), n)
    monkeypatch.setattr(datasets, "CIFAR_BATCHES", {m: hashlib.md5(b).hexdigest() for m, b in blobs.items()})
    return write_cifar(tmp_path, blobs, as_tar=False)


def test_datasets_study_runs_cifar10_from_its_files_and_marks_it_not_run_without(monkeypatch, tmp_path):
    """The CIFAR-10 path of the study on small synthetic files (the runs in this process, so that the
    test's md5s apply): 3072-500-10, a test error per rule; without the files, 'not run here'."""
    def run_in_process(argvs, workers=None, quiet=False, scheduler=None):
        return [experiments.train(experiments.parse(a + ["--quiet"])) for a in argvs]
    monkeypatch.setattr(experiments, "run_all", run_in_process)
    root = synthetic_cifar(tmp_path / "data", monkeypatch)
    cfg = figures.FigConfig(dataset="cifar10", data_dir=root, runs=str(tmp_path / "runs"), epochs=1)
    out = studies.datasets_study(cfg, None, quick=True, entries=("bp", "sdnn:rate"))
    s = out["table"]["bp"]["cifar10"]
    assert out["status"] == {"cifar10": "run"} and 0 <= s["mean"] <= 100
    assert 0 <= out["table"]["sdnn:rate"]["cifar10"]["mean"] <= 100
    assert "3072" not in s["command"] and s["command"].startswith("--train bp --hidden 500 --dataset cifar10")
    import json
    run = json.loads(next((tmp_path / "runs").glob("bp_cifar10_*.json")).read_text())
    assert run["config"]["sizes"] == [3072, 500, 10]
    empty = figures.FigConfig(dataset="cifar10", data_dir=str(tmp_path / "nothing"), runs=str(tmp_path / "r2"))
    none = studies.datasets_study(empty, None, quick=True, entries=("bp",))
    assert none["status"] == {"cifar10": "not run here"} and none["table"] == {"bp": {}}
    assert "not run here" in studies.datasets_tables(none)["datasets"]


# ------------------------------------------------------------------------------------------------ command line

def run_cli(*argv, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, experiments.__file__, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False)


def test_complexity_prints_and_saves_both_tables_from_the_command_line(tmp_path):
    from conftest import data_dir_or_skip
    data_dir_or_skip("mnist")
    r = run_cli("--study", "complexity", "--quick", "--quiet", "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| rule | MFLOP / train ex." in r.stdout and "| rule | exact_gradients" in r.stdout
    saved = figures.load_data(str(tmp_path / "complexity"))
    assert set(saved["rows"]) == set(studies.COMPARED) and "plausibility" in saved["tables"]
    (tmp_path / "complexity.png").unlink()
    r = run_cli("--study", "complexity", "--replot", "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "complexity.png").exists(), r.stderr


@pytest.mark.parametrize("argv,words", [
    (["--study", "complexity", "--dynamics"], "--dynamics is an option of --train RULE"),
    (["--study", "datasets", "--set", "lr=1"], "study datasets has no model config"),
])
def test_bad_study_input_names_the_flag(argv, words, tmp_path):
    r = run_cli(*argv, "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr


def test_dynamics_of_rate_sdnn_give_its_angle_to_backprop_smaller_with_symmetric_feedback(tmp_path):
    """Rate-mode sdnn's kernel records no angle; the study's twin on a copy does, without changing the run.
    Feedback Y = W1^T (Fig 8D) sends nearly backprop's error: its angle is far below random feedback's."""
    argv = ["--train", "sdnn", "--preset", "rate", "--hidden", "32", "--epochs", "2", "--set", "etas=0.2,0.2"]
    random, without = run_json(tmp_path, *argv, "--dynamics"), run_json(tmp_path, *argv)
    symmetric = run_json(tmp_path, *argv, "symmetric_feedback=true", "--dynamics")
    assert random["test_error"] == without["test_error"]
    last = [[p for epoch in r["dynamics"] for p in epoch][-1]["angle_bp"][0] for r in (random, symmetric)]
    assert 0 < last[1] < 30 < last[0] < 90, last
