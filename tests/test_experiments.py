"""The command line: a real (small) training run, its JSON, and clear errors for bad input."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*argv, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)


def test_train_bp_on_digits_learns_and_writes_json(tmp_path):
    path = tmp_path / "bp.json"
    r = run("--train", "bp", "--dataset", "digits", "--hidden", "32", "--epochs", "15", "--batch", "20",
            "--lr", "1e-2", "--quiet", "--json", str(path))
    assert r.returncode == 0, r.stderr
    res = json.loads(path.read_text())
    for key in ("rule", "dataset", "hidden", "epochs", "train_error", "val_error", "test_error",
                "seconds_per_epoch", "config"):
        assert key in res
    assert res["rule"] == "bp" and res["epochs"] == 15 and res["hidden"] == [32]
    assert len(res["test_error"]) == 15 and res["config"]["sizes"] == [64, 32, 10]
    # chance is 90 % error; the 500 test digits come from other writers than the training ones, and a
    # small MLP trained on 1,000 images reaches about 8 % there (about 3 % on the validation digits)
    assert res["test_error"][-1] < 0.15 and res["val_error"][-1] < 0.08 and res["test_error"][-1] < res["test_error"][0]


def test_same_seed_same_curve(tmp_path):
    curves = []
    for i in range(2):
        path = tmp_path / f"r{i}.json"
        assert run("--train", "bp", "--dataset", "digits", "--epochs", "2", "--quiet", "--json", str(path),
                   "--seed", "3").returncode == 0
        curves.append(json.loads(path.read_text())["test_error"])
    assert curves[0] == curves[1]


@pytest.mark.parametrize("argv,words", [
    (["--train", "nosuchrule"], "valid rules: .*bp"),
    (["--fig", "99"], "valid figures"),
    (["--study", "nosuch"], "valid studies"),
    (["--bench", "nosuch"], "unknown benchmark"),
    (["--train", "bp", "--dataset", "nosuch"], "unknown dataset .*mnist"),
    (["--train", "bp", "--lr", "0"], "learning rate must be positive"),
    (["--train", "bp", "--lr", "-0.1"], "learning rate must be positive"),
    (["--train", "bp", "--hidden", "500", "0"], "hidden size must be positive"),
    (["--train", "bp", "--epochs", "0"], "--epochs 0: must be a positive integer"),
    (["--train", "sdnn", "--retests", "-1"], "--retests -1: must be 0"),
])
def test_bad_input_exits_nonzero_with_a_clear_message(argv, words, tmp_path):
    r = run(*argv, "--out", str(tmp_path))
    assert r.returncode != 0
    assert re.search(words, r.stderr), r.stderr
    assert "Traceback" not in r.stderr


def test_missing_data_directory_offline_names_the_directory(tmp_path):
    missing = tmp_path / "no_data_here"
    r = run("--train", "bp", "--dataset", "mnist", "--data-dir", str(missing), "--out", str(tmp_path),
            "--epochs", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert str(missing) in r.stderr and "train-images-idx3-ubyte.gz" in r.stderr


def test_sdnn_settings_from_the_command_line_keep_the_preset():
    import experiments
    args = experiments.parse(["--train", "sdnn", "--preset", "original_code", "--etas", "0.1", "0.2",
                              "--set", "g_a=0.05", "init_gain=0.5"])
    cfg = experiments.sdnn_config(args)
    assert (cfg.g_a, cfg.init_gain, cfg.etas) == (0.05, 0.5, (0.1, 0.2))
    assert (cfg.psp, cfg.window, cfg.test_ms) == ("truncated10", "last20", 250)   # the preset's own fields
    with pytest.raises(ValueError, match="--set g_q=1: expected KEY=VALUE with KEY one of .*g_a"):
        experiments.sdnn_config(experiments.parse(["--train", "sdnn", "--set", "g_q=1"]))


def test_baseline_settings_from_the_command_line_reach_the_config():
    import experiments
    args = experiments.parse(["--train", "sdtp", "--hidden", "8", "8", "--lr-inv", "3e-5",
                              "--set", "beta2=0.99", "eps_inv=1e-3"])
    cfg = experiments.baseline_config(args, 64, 10, 1000)
    assert (cfg.sizes, cfg.lr_inv, cfg.beta2, cfg.eps_inv) == ((64, 8, 8, 10), 3e-5, 0.99, 1e-3)
    assert cfg.phase_steps == 10                       # one alternating phase = one epoch of 1000 at batch 100
    with pytest.raises(ValueError, match="--set beta=0.9: expected KEY=VALUE with KEY one of .*beta2"):
        experiments.baseline_config(experiments.parse(["--train", "bp", "--set", "beta=0.9"]), 64, 10, 1000)


def test_interrupt_keeps_the_epochs_already_computed():
    import experiments
    result = {"epochs": 2, "test_error": [0.5, 0.4]}
    with experiments.keep_on_interrupt(result):
        raise KeyboardInterrupt
    assert result["interrupted"] is True and result["test_error"] == [0.5, 0.4]


def test_train_sdnn_decays_the_rates_after_each_epoch(monkeypatch):
    """--set eta_decay reaches every epoch's training: etas * eta_decay**epoch, not the constant etas."""
    import numpy as np

    import experiments
    import sdnn
    seen = []

    def epoch(net, state, X, y, cfg, rng, progress=None, avg=None, run=None):
        seen.append(cfg.etas)
        n = len(X)
        return {"angle": np.full(n, np.nan), "L0": np.zeros(n), "L1": np.zeros(n), "correct": np.zeros(n)}
    monkeypatch.setattr(sdnn, "train_epoch", epoch)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1: np.zeros(len(X), int))
    args = experiments.parse(["--train", "sdnn", "--dataset", "digits", "--hidden", "8", "--etas", "0.4", "0.2",
                              "--set", "eta_decay=0.5", "--epochs", "3", "--quiet"])
    experiments.train_sdnn(args)
    assert seen == [(0.4, 0.2), (0.2, 0.1), (0.1, 0.05)]


def test_train_sdnn_tells_a_linear_schedule_where_each_epoch_sits(monkeypatch):
    """--set eta_schedule=linear: every epoch's train_epoch gets run = (examples before it, examples in all
    epochs), so that the rates fall to 0 at the end of the last epoch, and the etas are not decayed twice."""
    import numpy as np

    import experiments
    import sdnn
    seen = []

    def epoch(net, state, X, y, cfg, rng, progress=None, avg=None, run=None):
        seen.append((cfg.etas, run))
        n = len(X)
        return {"angle": np.full(n, np.nan), "L0": np.zeros(n), "L1": np.zeros(n), "correct": np.zeros(n)}
    monkeypatch.setattr(sdnn, "train_epoch", epoch)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1: np.zeros(len(X), int))
    args = experiments.parse(["--train", "sdnn", "--dataset", "digits", "--hidden", "8", "--etas", "0.4", "0.2",
                              "--limit", "100", "--set", "eta_schedule=linear", "--epochs", "3", "--quiet"])
    experiments.train_sdnn(args)
    assert seen == [((0.4, 0.2), (0, 300)), ((0.4, 0.2), (100, 300)), ((0.4, 0.2), (200, 300))]


def test_train_sdnn_tests_the_weight_average(monkeypatch):
    """--set avg_halflife=N: val and test see the running average, not the weights that learn. Each fake
    epoch of 100 examples adds 1 to W; with a half-life of 100 the average moves half-way: +0.5, then +1.25."""
    import numpy as np

    import experiments
    import sdnn

    def epoch(net, state, X, y, cfg, rng, progress=None, avg=None, run=None):
        net.W[0] += 1.0
        sdnn.polyak(avg, net, len(X), cfg)
        n = len(X)
        return {"angle": np.full(n, np.nan), "L0": np.zeros(n), "L1": np.zeros(n), "correct": np.zeros(n)}
    tested = []
    monkeypatch.setattr(sdnn, "train_epoch", epoch)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1:
                        tested.append(float(net.W[0].mean())) or np.zeros(len(X), int))
    args = experiments.parse(["--train", "sdnn", "--dataset", "digits", "--hidden", "8", "--etas", "0.2", "0.2",
                              "--limit", "100", "--set", "avg_halflife=100", "--epochs", "2", "--quiet"])
    experiments.train_sdnn(args)
    shift = np.array(tested) - tested[0]                        # initial test, then val and test per epoch
    np.testing.assert_allclose(shift, [0, 0.5, 0.5, 1.25, 1.25], atol=1e-5)


@pytest.mark.parametrize("rule,hidden", [("aosdtp", ["16"]), ("eqprop", ["16"]), ("kh", ["16"]),
                                         ("microcircuit", ["16", "16"])])
def test_no_validation_split_trains_and_leaves_val_error_empty(rule, hidden, tmp_path):
    """--n-valid 0 (all training images, the papers' protocol): the epochs run and only val_error is empty."""
    path = tmp_path / "r.json"
    r = run("--train", rule, "--dataset", "digits", "--hidden", *hidden, "--epochs", "1", "--n-valid", "0",
            "--quiet", "--json", str(path), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads(path.read_text())
    assert res["val_error"] == [None] and 0.0 <= res["test_error"][0] <= 1.0


def test_sdnn_retests_the_final_network_with_fresh_spikes(tmp_path):
    """--retests N: N more spiking tests of the final network (Fig 6B); they differ, and agree with the last test."""
    import statistics
    path = tmp_path / "r.json"
    r = run("--train", "sdnn", "--dataset", "digits", "--hidden", "20", "--etas", "0.2", "0.2", "--limit", "1000",
            "--epochs", "2", "--retests", "4", "--quiet", "--json", str(path), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads(path.read_text())
    errs = res["test_retests"]
    assert len(errs) == 4 and len(set(errs)) > 1                   # Poisson spikes: each re-test differs
    assert res["test_retest_mean"] == pytest.approx(statistics.mean(errs))
    assert res["test_retest_sd"] == pytest.approx(statistics.stdev(errs))
    assert abs(res["test_retest_mean"] - res["test_error"][-1]) < 0.05   # the same network, the same 500 digits
