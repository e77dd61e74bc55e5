"""--study robustness: the Optuna driver against a synthetic objective, then end to end on the digits
(journal, trials, the best configuration retrained, a second process adding trials to the same study)."""
import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import studies
from figures import FigConfig, load_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


def fake_val(argv, epoch):
    """A synthetic validation error for a bp command: 0.9 if lr > 3e-2 (as if useless), else falling with the
    epoch, best at lr = 1e-3."""
    import math
    lr = float(argv[argv.index("--set") + 1].partition("=")[2])
    if lr > 3e-2:
        return 0.9
    return min(0.9, 0.05 + 0.1 * abs(math.log10(lr / 1e-3))) / epoch


def fake_run(calls):
    def run(argvs):
        calls.append(argvs)
        return [{"val_error": [fake_val(a, e) for e in range(1, int(a[a.index("--epochs") + 1]) + 1)]} for a in argvs]
    return run


def test_tune_meets_the_budget_reports_every_epoch_and_prunes_by_the_median(tmp_path):
    cfg = FigConfig(dataset="digits", runs=str(tmp_path / "runs"))
    calls = []
    names = studies.tune(["bp"], cfg, quick=True, epochs=3, budget=12, slots=2, run=fake_run(calls))
    study = optuna.load_study(study_name=names["bp"],
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "robustness.journal"))))
    trials = study.trials
    assert len(trials) == 12 and {t.state for t in trials} <= {COMPLETE, PRUNED}
    for t in trials:                        # every epoch reported, the objective's own numbers
        argv = studies.tuning_argv("bp", t.user_attrs["run_params"], cfg, True, 3, 0)
        assert t.intermediate_values == {e: fake_val(argv, e) for e in t.intermediate_values}
        if t.state == COMPLETE:
            assert t.value == fake_val(argv, 3) and len(t.intermediate_values) == 3
    assert all(len(batch) <= 2 for batch in calls)                    # `slots` runs at a time
    # MedianPruner (n_startup_trials = min(5, 12 // 2) = 5): a trial is pruned at an epoch when its best value
    # so far is worse than the median, at that epoch, of the trials complete before its round (2 a round)
    pruned = [t for t in trials if t.state == PRUNED]
    assert pruned
    for t in trials:
        before = [u for u in trials if u.state == COMPLETE and u.number < t.number // 2 * 2]
        expected = next((e for e in (1, 2) if len(before) >= 5 and min(t.intermediate_values[s] for s in range(1, e + 1))
                         > np.median([u.intermediate_values[e] for u in before])), None)   # the pruning epoch
        assert (t.state == PRUNED, max(t.intermediate_values)) == (expected is not None, expected or 3), t.number


def test_a_trial_of_a_dead_driver_is_rerun_with_the_same_parameters(tmp_path):
    cfg = FigConfig(dataset="digits", runs=str(tmp_path / "runs"))
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "robustness.journal")))
    name = "robustness_digits_quick_e2_s0_bp"
    study = optuna.create_study(study_name=name, storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()                                 # a pid that has ended
    orphan = study.ask()
    p = studies.suggest(orphan, studies.SPACES["bp"].ranges)
    orphan.set_user_attr("owner", f"{studies.socket.gethostname()}:{dead}")
    studies.tune(["bp"], cfg, quick=True, epochs=2, budget=2, slots=1, run=fake_run([]))
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert trials[0].state == FAIL and trials[1].params == trials[0].params      # rerun: same parameters
    assert trials[1].user_attrs["run_params"] == p and len([t for t in trials if t.state != FAIL]) == 2


def run(*argv):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=900, check=False)


def test_robustness_end_to_end_on_the_digits_and_a_second_process_adds_trials(tmp_path):
    argv = ["--study", "robustness", "--dataset", "digits", "--quick", "--folds", "2", "--out", str(tmp_path)]
    r = run(*argv, "--set", "rules=bp", "trials=3")
    assert r.returncode == 0, r.stderr
    data = load_data(str(tmp_path / "robustness"))
    assert (tmp_path / "robustness.png").exists() and (tmp_path / "robustness.journal").exists()
    bp = data["rules"]["bp"]
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "robustness.journal")))
    study = optuna.load_study(study_name=bp["study"], storage=storage)
    first = [(t.params, t.value) for t in study.trials]           # (study.trials reads the journal anew)
    assert len(first) == 3 and all(t.state in (COMPLETE, PRUNED) for t in study.trials)
    complete = [t.value for t in study.trials if t.state == COMPLETE]
    assert bp["best"]["val"] == pytest.approx(100 * min(complete))
    # the grid: the centre and each hyperparameter alone (quick: every other value), 5 runs
    assert [tuple(g["params"].values()) for g in bp["grid"]] == [(500, 1, 1e-3), (100, 1, 1e-3), (500, 3, 1e-3),
                                                                  (500, 1, 1e-4), (500, 1, 1e-2)]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    tuning = [x for x in runs if x["no_test"]]
    assert len(tuning) >= 5 + 3 and all(e is None for x in tuning for e in x["test_error"])   # never the test set
    tested = [x for x in runs if not x["no_test"]]                 # the best configuration, retrained once
    assert len(tested) == 1 and tested[0]["n_valid"] == 0 and tested[0]["n_train"] == 1297     # every training digit
    best = bp["best"]["params"]
    assert tested[0]["hidden"] == [best["units"]] * best["layers"]
    assert tested[0]["config"]["lr"] == pytest.approx(best["lr"])
    assert bp["test"] == [pytest.approx(100 * tested[0]["test_error"][-1])]
    folds = sorted((x["fold"], x["n_train"]) for x in tuning if x["fold"])
    assert folds == [([1, 2], 1297 - 648), ([2, 2], 648)]          # 1,297 digits: blocks of 648 and 649
    # a second process on the same journal, with a larger budget, adds trials to the same study
    r = run(*argv, "--set", "rules=bp", "trials=5", "grid=false")
    assert r.returncode == 0, r.stderr
    again = optuna.load_study(study_name=bp["study"], storage=storage).trials
    assert len(again) == 5 and [(t.params, t.value) for t in again[:3]] == first
    assert "bp trial 3" in r.stdout and "bp trial 4" in r.stdout and "bp trial 0" not in r.stdout
    saved = (tmp_path / "robustness.json").read_text()
    (tmp_path / "robustness.png").unlink()
    r = run("--study", "robustness", "--replot", "--out", str(tmp_path))             # from the saved numbers only
    assert r.returncode == 0 and (tmp_path / "robustness.png").exists(), r.stderr
    assert (tmp_path / "robustness.json").read_text() == saved
    assert b"/Type3" not in (tmp_path / "robustness.pdf").read_bytes()


def test_the_same_seed_proposes_the_same_trials(tmp_path):
    cfg = [FigConfig(dataset="digits", runs=str(tmp_path / d / "runs"), seed=1) for d in ("a", "b")]
    for c in cfg:
        studies.tune(["bp", "fa"], c, quick=True, epochs=2, budget=4, slots=2, run=fake_run([]))
    trials = [[optuna.load_study(study_name=f"robustness_digits_quick_e2_s1_{rule}", storage=JournalStorage(
        JournalFileBackend(os.path.join(os.path.dirname(c.runs), "robustness.journal")))).trials for rule in ("bp", "fa")]
        for c in cfg]
    assert [[t.params for t in s] for s in trials[0]] == [[t.params for t in s] for s in trials[1]]
    other = FigConfig(dataset="digits", runs=str(tmp_path / "c" / "runs"), seed=2)
    studies.tune(["bp"], other, quick=True, epochs=2, budget=4, slots=2, run=fake_run([]))
    assert [t.params for t in optuna.load_study(study_name="robustness_digits_quick_e2_s2_bp", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "c" / "robustness.journal")))).trials] != [t.params for t in trials[0][0]]


@pytest.mark.parametrize("argv,message", [
    (["--study", "robustness", "--set", "rules=bp,nosuch"], "unknown \\['nosuch'\\]; choose from sdnn,sdnn_rate"),
    (["--study", "robustness", "--storage", "robustness.db"], "--storage robustness.db: give a database URL"),
    (["--study", "robustness", "--folds", "1"], "--folds 1: cross-validation needs K >= 2"),
    (["--fig", "3", "--folds", "5"], "--storage and --folds are options of --study robustness"),
])
def test_bad_robustness_options_name_the_fix(argv, message, tmp_path):
    import re
    r = run(*argv, "--out", str(tmp_path))
    assert r.returncode != 0 and re.search(message, r.stderr) and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_robustness_quick_on_mnist_runs_every_rule(tmp_path):
    """The README's quick command: every rule, the grid (every other value), 4 trials each, 1 retrained seed."""
    from conftest import data_dir_or_skip
    data_dir_or_skip("mnist")
    r = run("--study", "robustness", "--quick", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = load_data(str(tmp_path / "robustness"))
    assert list(data["rules"]) == list(studies.SPACES)
    for rule, part in data["rules"].items():
        assert len(part["trials"]) == 4 and len(part["test"]) == 1 and part["test"][0] is not None, rule
        assert len(part["grid"]) == len(studies.grid_configs(rule, quick=True)), rule
