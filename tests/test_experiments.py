"""The command line: a real (small) training run, its JSON, and clear errors for bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import data_dir_or_skip

import experiments
import figures

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
    args = experiments.parse(["--train", "sdnn", "--preset", "original_code",
                              "--set", "etas=0.1,0.2", "g_a=0.05", "init_gain=0.5"])
    cfg, sched = experiments.sdnn_settings(args)
    assert (cfg.g_a, cfg.etas, sched.init_gain) == (0.05, (0.1, 0.2), 0.5)       # model and run settings apart
    assert (cfg.psp, cfg.window, cfg.test_ms) == ("truncated10", "last20", 250)   # the preset's own fields
    with pytest.raises(ValueError, match="--set g_q=1: expected KEY=VALUE with KEY one of .*g_a"):
        experiments.sdnn_settings(experiments.parse(["--train", "sdnn", "--set", "g_q=1"]))
    with pytest.raises(ValueError, match="--lr: sdnn has no single lr"):        # not silently ignored
        experiments.sdnn_settings(experiments.parse(["--train", "sdnn", "--lr", "0.1"]))
    with pytest.raises(ValueError, match="--set etas"):                          # no paper rates for 300 units
        experiments.sdnn_settings(experiments.parse(["--train", "sdnn", "--hidden", "300"]))


def test_baseline_settings_from_the_command_line_reach_the_config(tmp_path):
    import experiments
    none = np.zeros((0, 64))
    data = experiments.Split(np.zeros((1000, 64)), np.zeros(1000, int), none, none, none, np.zeros(1, int), 10)
    args = experiments.parse(["--train", "sdtp", "--hidden", "8", "8", "--set", "lr_inv=3e-5", "beta2=0.99",
                              "eps_inv=1e-3"])
    cfg = experiments.cli_minibatch(args, data, np.random.default_rng(0)).config
    assert (cfg["sizes"], cfg["lr_inv"], cfg["beta2"], cfg["eps_inv"]) == ([64, 8, 8, 10], 3e-5, 0.99, 1e-3)
    assert cfg["phase_steps"] == 10                    # one alternating phase = one epoch of 1000 at batch 100
    with pytest.raises(ValueError, match="--set beta=0.9: expected KEY=VALUE with KEY one of .*beta2"):
        experiments.cli_minibatch(experiments.parse(["--train", "bp", "--set", "beta=0.9"]), data, None)
    args = experiments.parse(["--train", "sdtp", "--set", "activation=tanh", "--lr", "1e-3", "--set", "sigma=0.1"])
    assert args.set == ["activation=tanh", "sigma=0.1"]                         # several --set add up
    with pytest.raises(ValueError, match="--lr and --set lr=...: give one of them"):
        experiments.cli_minibatch(experiments.parse(["--train", "bp", "--lr", "0.1", "--set", "lr=0.2"]), data, None)


def test_default_hidden_layer_works_for_every_rule(tmp_path):
    """Every rule trains with the default --hidden (one layer of 500) without further settings."""
    import experiments
    for rule in sorted(experiments.TRAINERS):
        r = run("--train", rule, "--dataset", "digits", "--epochs", "1", "--limit", "200", "--quick", "--quiet",
                "--out", str(tmp_path), *(["--set", "epochs_unsup=1"] if rule == "kh" else []))
        assert r.returncode == 0, (rule, r.stderr)


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
    r = run("--train", "sdnn", "--dataset", "digits", "--hidden", "20", "--set", "etas=0.2,0.2", "--limit", "1000",
            "--epochs", "2", "--retests", "4", "--quiet", "--json", str(path), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads(path.read_text())
    errs = res["test_retests"]
    assert len(errs) == 4 and len(set(errs)) > 1                   # Poisson spikes: each re-test differs
    assert res["test_retest_mean"] == pytest.approx(statistics.mean(errs))
    assert res["test_retest_sd"] == pytest.approx(statistics.stdev(errs))
    assert abs(res["test_retest_mean"] - res["test_error"][-1]) < 0.05   # the same network, the same 500 digits
    # timed for figures.suite_time: the initial test (it may include compiling), and 4 re-tests, each about
    # as long as an epoch's testing (which also tests the validation images)
    assert res["start_seconds"] > 0 and res["finish_seconds"] > 4 * 0.2 * min(res["eval_seconds_per_epoch"])


TRAINING_FIGURES = ["5", "5s1", "6", "6s1", "7", "8", "8s1", "9"]


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    """One --out for the training figures, so that they share their quick runs as a user's figures do."""
    return tmp_path_factory.mktemp("figures")


@pytest.mark.parametrize("name", ["3", "4", "kh-fields", *TRAINING_FIGURES])
def test_every_figure_runs_quick_and_replots_from_the_command_line(name, tmp_path, shared_out):
    """--fig N --quick computes, saves the data and draws PNG + PDF; --replot redraws from that data only."""
    import figures
    assert set(figures.FIGURES) == {"3", "4", "kh-fields", *TRAINING_FIGURES}   # a new figure needs its test here
    if name in TRAINING_FIGURES:
        data_dir_or_skip("mnist")
        tmp_path = shared_out
    stem = f"fig{name}" if name[0].isdigit() else name
    r = run("--fig", name, "--quick", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for ext in ("json", "png", "pdf"):
        assert (tmp_path / f"{stem}.{ext}").exists()
    saved = (tmp_path / f"{stem}.json").read_text()
    (tmp_path / f"{stem}.png").unlink()
    r = run("--fig", name, "--replot", "--out", str(tmp_path))
    assert r.returncode == 0 and (tmp_path / f"{stem}.png").exists(), r.stderr
    assert (tmp_path / f"{stem}.json").read_text() == saved               # nothing recomputed


def test_fig_all_reuses_the_runs_every_figure_shares(shared_out):
    """--fig all trains each distinct run once: after the figures above, it starts no run at all."""
    data_dir_or_skip("mnist")
    r = run("--fig", "all", "--quick", "--quiet", "--out", str(shared_out))
    assert r.returncode == 0, r.stderr
    n = len([name for name in figures.FIGURES if name[0].isdigit()])
    assert "run: " not in r.stdout and f"{n} of {n} figures drawn" in r.stdout
    assert all((shared_out / f"fig{n}.png").exists() for n in ["3", "4", *TRAINING_FIGURES])


def test_a_figure_is_computed_from_copied_run_records_alone(shared_out, tmp_path):
    """reference/runs/ carries runs between machines as their JSON records, without checkpoints: copied into
    another --out's runs, they are reused (no run starts) and give the same figure data."""
    import shutil
    data_dir_or_skip("mnist")
    r = run("--fig", "8", "--quick", "--quiet", "--out", str(shared_out))       # its runs exist (or are made)
    assert r.returncode == 0, r.stderr
    (tmp_path / "runs").mkdir()
    for record in (shared_out / "runs").glob("*.json"):
        shutil.copy(record, tmp_path / "runs")
    r = run("--fig", "8", "--quick", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "run: " not in r.stdout and not list((tmp_path / "runs").glob("*.ckpt"))
    mine, theirs = (figures.load_data(str(d / "fig8")) for d in (tmp_path, shared_out))
    assert mine["curves"] == theirs["curves"] and mine["tests"] == theirs["tests"]


def test_fig_all_draws_every_other_figure_when_one_fails(monkeypatch, tmp_path):
    """A figure whose data cannot be computed is reported at the end; the figures after it are drawn."""
    import matplotlib.pyplot as plt

    def broken(cfg, rng, quick):
        raise KeyError("run of seed 1")
    fine = (lambda cfg, rng, quick: {"x": [1, 2]}, lambda data: plt.figure(), None)
    monkeypatch.setattr(figures, "FIGURES", {"1": (broken, None, None), "2": fine, "3": fine})
    monkeypatch.setattr(figures, "all_runs", lambda cfg, quick: [])
    monkeypatch.setattr(experiments, "run_all", lambda argvs, **kw: [])
    args = experiments.parse(["--fig", "all", "--quick", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="figures 1 could not be drawn"):
        experiments.draw(args, "fig")
    assert (tmp_path / "fig2.png").exists() and (tmp_path / "fig3.png").exists()
    assert not (tmp_path / "fig1.json").exists()


def test_study_runs_quick_from_the_command_line(tmp_path):
    r = run("--study", "sdnn_fidelity", "--quick", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sdnn_fidelity.json").exists() and (tmp_path / "sdnn_fidelity.png").exists()


def test_replot_without_saved_data_draws_the_reference_run(tmp_path):
    """A student sees every figure without training: --replot falls back to the committed reference/."""
    r = run("--fig", "4", "--replot", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fig4.png").exists() and "reference" in r.stdout


def test_fig_all_sends_its_runs_to_the_scheduler_given(monkeypatch, tmp_path):
    """--fig all --scheduler ADDRESS hands that address to run_all, as every single figure does."""
    seen = []

    class Stop(Exception):
        pass

    def fake_run_all(argvs, workers=None, quiet=False, scheduler=None):
        seen.append((len(argvs), scheduler))
        raise Stop
    monkeypatch.setattr(experiments, "run_all", fake_run_all)
    args = experiments.parse(["--fig", "all", "--quick", "--scheduler", "tcp://10.0.0.1:8786", "--out", str(tmp_path)])
    with pytest.raises(Stop):
        experiments.draw(args, "fig")
    assert seen and seen[0][0] > 0 and seen[0][1] == "tcp://10.0.0.1:8786"
