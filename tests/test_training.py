"""The training loop (experiments.fit): the run schedule of sdnn, checkpoints and resume, interrupts."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

import baselines
import experiments
import sdnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = replace(sdnn.PAPER, hidden=(20,), etas=(0.5, 0.5))
TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "pre_seconds_per_epoch", "start_seconds", "finish_seconds",
          "command", "interrupted")


def _inputs(rng, n, n_in=64):
    X = np.where(rng.random((n, n_in)) < 0.3, rng.random((n, n_in)), 0.0).astype(np.float32)
    return X, rng.integers(0, 10, n)


def _model(cfg, avg=False):
    net = sdnn.init_weights(64, cfg, np.random.default_rng(0))
    return {"net": net, "state": sdnn.init_state(net), "avg": experiments.copy_weights(net) if avg else None}


@pytest.mark.parametrize("spiking", [True, False], ids=["spiking", "rate"])
def test_weight_average_follows_the_snapshots_by_hand(spiking):
    """avg_halflife on 1,100 examples equals the average worked out by hand from snapshots of a twin
    trained on the same draws: every block (500 examples; rate mode: 1,000) and at the end."""
    cfg = replace(SMALL, spiking=spiking, spiking_feedback=spiking, random_phase_lengths=spiking)
    X, y = _inputs(np.random.default_rng(3), 1100)
    m = _model(cfg, avg=True)
    experiments.sdnn_epoch(m, X, y, cfg, experiments.Schedule(avg_halflife=700.0), np.random.default_rng(1), 0, 1100)

    twin = _model(cfg)["net"]
    state, rng = sdnn.init_state(twin), np.random.default_rng(1)
    expect = [np.array(w, np.float64) for w in twin.W + twin.b]
    step = 500 if spiking else 1000
    for a in range(0, 1100, step):
        sdnn.train_epoch(twin, state, X[a:a + step], y[a:a + step], cfg, rng)
        d = 2.0 ** (-len(X[a:a + step]) / 700.0)
        expect = [d * e + (1 - d) * w for e, w in zip(expect, twin.W + twin.b)]
    for got, want, w in zip(m["avg"].W + m["avg"].b, expect, m["net"].W + m["net"].b):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert np.abs(got - w).max() > 1e-3                     # the average lags the weights it follows
    assert m["avg"].Y is m["net"].Y


@pytest.mark.parametrize("spiking", [True, False], ids=["spiking", "rate"])
def test_linear_schedule_steps_the_rates_by_hand(spiking):
    """eta_schedule "linear", epoch 1 (the second) of 1,100 examples in a 3,300-example run, equals a twin
    trained block by block with constant rates set by hand to etas * (1 - middle / 3300)."""
    cfg = replace(SMALL, spiking=spiking, spiking_feedback=spiking, random_phase_lengths=spiking)
    X, y = _inputs(np.random.default_rng(3), 1100)
    m = _model(cfg)
    experiments.sdnn_epoch(m, X, y, cfg, experiments.Schedule(eta_schedule="linear"), np.random.default_rng(1), 1, 3300)

    twin = _model(cfg)["net"]
    state, rng = sdnn.init_state(twin), np.random.default_rng(1)
    blocks = ([(0, 500, 1350), (500, 1000, 1850), (1000, 1100, 2150)] if spiking   # (from, to, 1100 + middle)
              else [(0, 1000, 1600), (1000, 1100, 2150)])                          # rate mode: blocks of 1,000
    for a, z, middle in blocks:
        f = 1 - middle / 3300
        sdnn.train_epoch(twin, state, X[a:z], y[a:z], replace(cfg, etas=(0.5 * f, 0.5 * f)), rng)
    for got, want in zip(m["net"].W + m["net"].b, twin.W + twin.b):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("change,word", [({"eta_decay": 0.0}, "eta_decay"), ({"eta_decay": 1.5}, "eta_decay"),
                                         ({"avg_halflife": -1}, "avg_halflife"), ({"eta_schedule": "cosine"},
                                         "eta_schedule"), ({"eta_schedule": "linear", "eta_decay": 0.7}, "eta_decay")])
def test_schedule_validation_names_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        experiments.Schedule(**change)


def test_sdnn_config_holds_the_paper_model_only():
    """The training devices are the run's (Schedule), not fields of the paper's model."""
    fields = set(sdnn.Config.__dataclass_fields__)
    assert not fields & {"eta_decay", "eta_schedule", "avg_halflife", "init_gain"}


def _fake_sdnn(monkeypatch, seen, shift_W=False):
    def train_epoch(net, state, X, y, cfg, rng, progress=None):
        seen.append((cfg.etas, len(X)))
        if shift_W:
            net.W[0] += 1.0
        n = len(X)
        return {"angle": np.full(n, np.nan), "L0": np.zeros(n), "L1": np.zeros(n), "correct": np.zeros(n, bool)}
    monkeypatch.setattr(sdnn, "train_epoch", train_epoch)


def _cli(tmp_path, *argv):
    return experiments.main(["--dataset", "digits", "--quiet", "--out", str(tmp_path), *argv])


def test_cli_schedule_decays_the_rates_after_each_epoch(monkeypatch, tmp_path):
    """--set eta_decay reaches every epoch's training: etas * eta_decay**epoch; the Config keeps the paper's."""
    seen = []
    _fake_sdnn(monkeypatch, seen)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1, progress=None: np.zeros(len(X), int))
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.4,0.2", "eta_decay=0.5", "--epochs", "3",
         "--limit", "100")
    assert seen == [((0.4, 0.2), 100), ((0.2, 0.1), 100), ((0.1, 0.05), 100)]
    (path,) = tmp_path.glob("sdnn_digits_*_s0.json")               # one file per run, named by its settings
    res = json.loads(path.read_text())
    assert res["config"]["etas"] == [0.4, 0.2] and res["schedule"]["eta_decay"] == 0.5


def test_cli_linear_schedule_falls_over_the_whole_run(monkeypatch, tmp_path):
    """--set eta_schedule=linear, 3 epochs of 600 examples: blocks of 500 learn at their middle example's rate."""
    seen = []
    _fake_sdnn(monkeypatch, seen)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1, progress=None: np.zeros(len(X), int))
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.4,0.2", "eta_schedule=linear",
         "--epochs", "3", "--limit", "600")
    middles = [250, 550, 850, 1150, 1450, 1750]
    assert [n for _, n in seen] == [500, 100] * 3
    for (etas, _), mid in zip(seen, middles):
        assert etas == (0.4 * (1 - mid / 1800), 0.2 * (1 - mid / 1800))


def test_cli_tests_the_weight_average(monkeypatch, tmp_path):
    """--set avg_halflife=N: val and test see the running average, not the weights that learn. Each fake
    epoch of 100 examples adds 1 to W; with a half-life of 100 the average moves half-way: +0.5, then +1.25."""
    tested = []
    _fake_sdnn(monkeypatch, [], shift_W=True)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1, progress=None:
                        tested.append(float(net.W[0].mean())) or np.zeros(len(X), int))
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.2,0.2", "avg_halflife=100",
         "--limit", "100", "--epochs", "2")
    shift = np.array(tested) - tested[0]                        # initial test, then val and test per epoch
    np.testing.assert_allclose(shift, [0, 0.5, 0.5, 1.25, 1.25], atol=1e-5)


def _same_run(a, b):
    a, b = (json.loads(p.read_text()) for p in (a, b))
    for key in TIMING:
        a.pop(key, None), b.pop(key, None)
    assert a == b


def _interrupt_after(monkeypatch, module, name, calls):
    """Make module.name raise KeyboardInterrupt after its `calls`-th call has run (mid-epoch: the model
    has already changed since the last checkpoint)."""
    real, count = getattr(module, name), [0]

    def wrapped(*a, **k):
        out = real(*a, **k)
        count[0] += 1
        if count[0] == calls:
            raise KeyboardInterrupt
        return out
    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("rule,argv,module,name,calls", [
    ("bp", ["--hidden", "16"], baselines, "step", 15),                   # 10 minibatches per epoch
    ("dtp", ["--hidden", "16", "16"], baselines, "step", 15),
    ("eqprop", ["--hidden", "16", "--batch", "50"], baselines, "eqprop_step", 30),
    ("sdnn", ["--hidden", "20", "--set", "etas=0.2,0.2", "eta_schedule=linear", "avg_halflife=300",
              "--limit", "600", "--retests", "2"], sdnn, "train_epoch", 3),   # blocks of 500 + 100
])
def test_resume_after_an_interrupt_gives_the_uninterrupted_result(rule, argv, module, name, calls, tmp_path,
                                                                  monkeypatch, capsys):
    """Interrupt a run in its second epoch, resume it: the JSON equals an uninterrupted run's, bit for bit."""
    whole, cut = tmp_path / "whole.json", tmp_path / "cut.json"
    common = ["--train", rule, *argv, "--epochs", "3", "--seed", "4"]
    _cli(tmp_path, *common, "--json", str(whole))
    with monkeypatch.context() as patch:
        _interrupt_after(patch, module, name, calls)
        _cli(tmp_path, *common, "--json", str(cut))
    stopped = json.loads(cut.read_text())
    assert stopped["interrupted"] and stopped["epochs"] == 1 and not stopped["finished"]
    capsys.readouterr()
    _cli(tmp_path, *common, "--json", str(cut), "--resume")
    assert "unsupervised and 1 epochs done" in capsys.readouterr().out     # from the checkpoint, not afresh
    _same_run(whole, cut)


def test_resume_refuses_another_runs_checkpoint(tmp_path, capsys):
    path = str(tmp_path / "r.json")
    _cli(tmp_path, "--train", "bp", "--hidden", "8", "--epochs", "1", "--json", path)
    os.remove(path)              # the checkpoint alone (with the JSON, check_overwrite refuses first)
    with pytest.raises(SystemExit) as exit_:
        _cli(tmp_path, "--train", "bp", "--hidden", "8", "--lr", "0.01", "--epochs", "2", "--json", path, "--resume")
    assert exit_.value.code == 2 and "other settings (config)" in capsys.readouterr().err


def test_unwritable_output_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), "--train", "bp", "--dataset", "digits",
                        "--json", str(tmp_path / "file" / "r.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot write" in r.stderr and "epoch" not in r.stdout


def test_no_room_for_the_checkpoint_fails_before_training(tmp_path):
    """Files limited to 100 kB (as a nearly full disk: an empty file still fits) and bp 64-500-10, whose
    checkpoint (weights and Adam's moments) is about 0.9 MB: rc 2 before the first epoch, nothing left behind."""
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))   # Python ignores SIGXFSZ
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), "--train", "bp", "--dataset", "digits",
                        "--out", str(out)], capture_output=True, text=True, preexec_fn=small_files)
    assert r.returncode == 2 and "cannot write" in r.stderr and "File too large" in r.stderr, r.stderr
    assert "epoch" not in r.stdout and os.listdir(out) == []


def test_a_disk_that_fills_during_training_keeps_the_last_epoch_written(monkeypatch, tmp_path, capsys):
    """The writes of epoch 2 fail (ENOSPC): rc 2 with the file named, no traceback; the JSON and checkpoint
    are epoch 1's, as in an uninterrupted run, and --resume finishes the run as that run ends."""
    import errno
    whole, cut = tmp_path / "whole.json", tmp_path / "cut.json"
    common = ["--train", "bp", "--hidden", "16", "--epochs", "3"]
    _cli(tmp_path, *common, "--json", str(whole))
    real, writes = experiments.atomic_write, []

    def full_after_epoch_1(path, write, mode="w"):
        writes.append(path)
        if path.startswith(str(cut)) and sum(p == str(cut) for p in writes) > 1:   # epoch 2's JSON
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path + f".{os.getpid()}.tmp")
        return real(path, write, mode)
    with monkeypatch.context() as patch:
        patch.setattr(experiments, "atomic_write", full_after_epoch_1)
        with pytest.raises(SystemExit) as exit_:
            _cli(tmp_path, *common, "--json", str(cut))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "after epoch 2: No space left on device" in err and "Traceback" not in err, err
    stopped, first = json.loads(cut.read_text()), json.loads(whole.read_text())
    assert stopped["epochs"] == 1 and stopped["test_error"] == first["test_error"][:1]
    assert sorted(os.listdir(tmp_path)) == ["cut.json", "cut.json.ckpt", "whole.json", "whole.json.ckpt"]
    _cli(tmp_path, *common, "--json", str(cut), "--resume")
    _same_run(whole, cut)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_keeps_its_epochs_and_resume_finishes_it(sig, tmp_path):
    """A real process, stopped after its first epoch by SIGTERM (handled) or SIGKILL (not): the JSON keeps
    the finished epochs, no progress bar floods the redirected output, and --resume ends where an
    uninterrupted run ends, bit for bit."""
    common = [sys.executable, os.path.join(ROOT, "experiments.py"), "--train", "sdnn", "--dataset", "digits",
              "--hidden", "20", "--set", "etas=0.2,0.2", "--epochs", "4", "--out", str(tmp_path)]
    whole, cut = tmp_path / "whole.json", tmp_path / "cut.json"
    subprocess.run(common + ["--json", str(whole)], check=True, capture_output=True)
    p = subprocess.Popen(common + ["--json", str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if cut.exists() and json.loads(cut.read_text())["epochs"] >= 1:
            p.send_signal(sig)
            break
        time.sleep(0.02)
    out, err = p.communicate(timeout=120)
    stopped = json.loads(cut.read_text())
    assert 1 <= stopped["epochs"] < 4 and not stopped["finished"], err
    if sig == signal.SIGTERM:
        assert p.returncode == 0 and stopped["interrupted"], err
    else:
        assert p.returncode == -signal.SIGKILL
    assert "\r" not in err and "\r" not in out
    r = subprocess.run(common + ["--json", str(cut), "--resume"], check=True, capture_output=True, text=True)
    assert f"unsupervised and {stopped['epochs']} epochs done" in r.stdout   # it did start from the checkpoint
    _same_run(whole, cut)


# ---- one file per run, many runs ----

def _result(**change):
    r = {"rule": "sdnn", "dataset": "mnist", "n_train": 60000, "n_valid": 0, "limit": None, "quick": False,
         "seed": 0, "config": experiments.config_json(sdnn.MARCH_2017), "schedule": {"eta_decay": 1.0}}
    return dict(r, **change)


def test_run_name_depends_on_settings_only_and_survives_new_default_fields():
    name = experiments.run_name(_result())
    assert name.startswith("sdnn_mnist_") and name.endswith("_s0")
    assert experiments.run_name(_result(command=["x"], epochs=7)) == name           # not part of the run
    added = dict(_result()["config"], some_new_field=sdnn.Config().init_spread)     # a field added later, at a
    fields = {f.name: f.default for f in __import__("dataclasses").fields(sdnn.Config)}   # default value
    assert "some_new_field" not in fields
    assert experiments.run_name(_result(config=dict(_result()["config"], g_b=0.6))) == name   # g_b at its default
    for other in (_result(seed=1), _result(n_valid=10000), _result(quick=True), _result(dataset="fashion_mnist"),
                  _result(config=experiments.config_json(sdnn.PAPER)), _result(schedule={"eta_decay": 0.9}),
                  _result(retests=20, epochs_requested=60), _result(config=added)):
        assert experiments.run_name(other) != name
    assert (experiments.run_name(_result(retests=20, epochs_requested=20))
            != experiments.run_name(_result(retests=20, epochs_requested=60)))       # re-tested: its length counts


def test_a_run_never_writes_over_another_runs_file(tmp_path, capsys):
    """--json naming the file of a run with other settings (with or without --resume, with its checkpoint
    gone), or a file that is no run's JSON: rc 2 before training and the file unchanged. The same run again
    without --resume starts afresh, with a note."""
    path = tmp_path / "r.json"
    base = ["--train", "bp", "--hidden", "8", "--epochs", "1", "--json", str(path)]
    _cli(tmp_path, *base)
    os.remove(str(path) + ".ckpt")
    saved, _ = path.read_text(), capsys.readouterr()
    for other, word in ((["--lr", "0.01"], "config"), (["--seed", "1"], "seed"), (["--limit", "500"], "limit"),
                        (["--lr", "0.01", "--resume"], "config")):
        with pytest.raises(SystemExit) as exit_:
            _cli(tmp_path, *base, *other)
        err = capsys.readouterr()
        assert exit_.value.code == 2 and f"holds another run (other {word}" in err.err and "epoch" not in err.out
        assert path.read_text() == saved
    figure = tmp_path / "fig.json"
    figure.write_text('{"x": [1, 2]}')
    with pytest.raises(SystemExit):
        _cli(tmp_path, *base[:-1], str(figure))
    assert figure.read_text() == '{"x": [1, 2]}' and "holds another run" in capsys.readouterr().err
    _cli(tmp_path, *base)
    assert "holds this run; starting it again" in capsys.readouterr().err
    assert json.loads(path.read_text())["test_error"] == json.loads(saved)["test_error"]     # same seed


def test_run_all_skips_finished_runs_resumes_longer_ones_and_reports_failures(tmp_path, capsys):
    ok = ["--train", "bp", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path)]
    bad = ["--train", "bp", "--dataset", "digits", "--epochs", "2", "--lr", "1e30", "--out", str(tmp_path)]
    first = experiments.run_all([ok, bad], workers=2, quiet=True)
    assert first[0]["epochs"] == 2 and first[0]["finished"] and "error" in first[1] and "diverged" in first[1]["error"]
    assert "run diverged: python experiments.py --train bp" in capsys.readouterr().err
    mtime = os.path.getmtime(first[0]["path"])
    again = experiments.run_all([ok], quiet=True)                                     # finished: not run again
    assert os.path.getmtime(first[0]["path"]) == mtime and again[0]["test_error"] == first[0]["test_error"]
    longer = experiments.run_all([ok[:5] + ["3"] + ok[6:]], quiet=True)[0]            # --epochs 3 continues it
    assert longer["path"] == first[0]["path"] and longer["test_error"][:2] == first[0]["test_error"]
    assert "resuming from" in open(first[0]["path"][:-5] + ".log").read()


def test_resume_refuses_a_checkpoint_of_another_format(tmp_path):
    path = str(tmp_path / "r.json")
    argv = ["--train", "bp", "--dataset", "digits", "--epochs", "1", "--json", path, "--quiet"]
    experiments.main(argv)
    import pickle
    with open(path + ".ckpt", "rb") as f:
        saved = pickle.load(f)
    saved["format"] = experiments.CHECKPOINT_FORMAT + 1
    with open(path + ".ckpt", "wb") as f:
        pickle.dump(saved, f)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv, "--epochs", "2", "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "another version" in r.stderr and "start the run again" in r.stderr


@pytest.mark.parametrize("argv,message", [
    (["--train", "bp", "--preset", "paper"], "--preset is an option of --train sdnn"),
    (["--train", "fa", "--retests", "3"], "--retests is an option of --train sdnn"),
    (["--train", "bp", "--diagnose"], "--diagnose is an option of --train sdnn"),
    (["--train", "sdnn", "--synapses", "w.npz"], "--synapses is an option of --train kh"),
    (["--fig", "4", "--diagnose"], "it does nothing here"),
    (["--fig", "6", "--seeds", "0"], "--seeds 0"),
    (["--train", "bp", "--dataset", "digits", "--set", "sizes=1,2"], "come from --hidden"),
    (["--train", "sdnn", "--dataset", "digits", "--set", "hidden=5"], "come from --hidden"),
])
def test_options_of_another_rule_or_command_are_refused(argv, message):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_a_run_stuck_at_chance_is_flagged_in_the_json_and_on_stderr(tmp_path):
    """bp at --lr 1000 and sdnn at etas 1000 do not diverge to NaN on digits but learn nothing: flagged after
    3 epochs near chance; a run that learns is not flagged."""
    cases = ((["bp", "--lr", "1000", "--epochs", "5"], True), (["bp", "--lr", "1e-3", "--epochs", "5"], False),
             (["sdnn", "--hidden", "20", "--set", "etas=1000,1000", "--epochs", "4"], True))
    for i, (argv, stuck) in enumerate(cases):
        path = tmp_path / f"{i}.json"
        r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), "--train", *argv, "--dataset",
                            "digits", "--quiet", "--json", str(path)], capture_output=True, text=True)
        result = json.loads(path.read_text())
        errors = result["val_error"]
        assert result.get("stuck_at_chance", False) == stuck, (argv, errors)
        assert ("near chance" in r.stderr) == stuck
        assert stuck == any(min(errors[i:i + 3]) >= 0.8 for i in range(len(errors) - 2))   # the rule, by hand


def test_concurrent_writers_never_leave_broken_json(tmp_path):
    """Two processes rewriting one JSON 200 times each while this one reads it: every read parses, and no
    writer fails (each writes its own temporary file, then renames it over the path)."""
    path = tmp_path / "r.json"
    experiments.save_json({"writer": -1, "values": list(range(2000))}, str(path))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import experiments\n"
            "for i in range(200): experiments.save_json({'writer': int(sys.argv[3]), 'values': list(range(2000))}, sys.argv[2])")
    writers = [subprocess.Popen([sys.executable, "-c", code, ROOT, str(path), str(w)]) for w in (1, 2)]
    reads = 0
    while any(w.poll() is None for w in writers):
        assert json.loads(path.read_text())["values"][-1] == 1999
        reads += 1
    assert [w.returncode for w in writers] == [0, 0] and reads > 10
    assert sorted(os.listdir(tmp_path)) == ["r.json"]                 # no temporaries left


def test_a_run_being_trained_is_not_trained_twice(tmp_path):
    """A second process on the same run stops with a clear error (the lock holds the first's process id);
    run_all waits for a run another process trains instead of starting it again; a stale lock is ignored."""
    argv = ["--train", "sdnn", "--dataset", "digits", "--epochs", "3", "--hidden", "200", "--set", "etas=0.5,0.5",
            "--quiet", "--out", str(tmp_path)]
    path = experiments.run_path(argv)
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments.py"), *argv])
    while experiments.lock_holder(path) != first.pid:
        assert first.poll() is None
        time.sleep(0.05)
    second = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv], capture_output=True, text=True)
    assert second.returncode == 2 and f"being trained by process {first.pid}" in second.stderr
    (result,) = experiments.run_all([argv], quiet=True)                # waits, then reads the first's result
    assert first.wait() == 0 and result["epochs"] == 3 and not os.path.exists(path + ".lock")
    with open(path + ".lock", "w") as f:                                 # a crashed process's lock
        f.write("999999999")
    assert experiments.lock_holder(path) is None
    assert experiments.run_all([argv[:5] + ["4"] + argv[6:]], quiet=True)[0]["epochs"] == 4


def test_a_checkpoint_without_a_later_option_resumes_only_while_that_option_is_off():
    saved = {"no_test": None, "config": {"etas": [0.21, 0.21], "psp": "truncated10"}}
    now = {"no_test": False, "config": {"etas": [0.21, 0.21], "psp": "truncated10", "backprop": False}}
    assert all(experiments.same_setting(saved[k], now[k]) for k in saved)
    now["config"]["backprop"] = True                                   # the option added later is on: another run
    assert not experiments.same_setting(saved["config"], now["config"])
    now["config"].update(backprop=False, etas=[0.1, 0.21])             # a setting both have differs
    assert not experiments.same_setting(saved["config"], now["config"])
    assert not experiments.same_setting(None, True) and experiments.same_setting(3, 3)


# ---- sdnn's testing: progress on a terminal, its time apart from training ----

def test_sdnn_predict_with_a_bar_gives_sdnn_predicts_classes_and_draws():
    """sdnn.predict with a progress bar: the same classes and the same state of rng afterwards as without,
    for one and two threads; the bar counts every image (45: two chunks of 20 and one of 5)."""
    import io
    from tqdm import tqdm
    net = sdnn.init_weights(64, SMALL, np.random.default_rng(0))
    X, _ = _inputs(np.random.default_rng(1), 45)
    for n_jobs in (1, 2):
        expected_rng, rng = np.random.default_rng(7), np.random.default_rng(7)
        expected = sdnn.predict(net, X, SMALL, expected_rng, n_jobs=n_jobs)
        with tqdm(total=len(X), file=io.StringIO(), disable=False) as bar:
            got = sdnn.predict(net, X, SMALL, rng, n_jobs=n_jobs, progress=bar.update)
            assert bar.n == 45
        np.testing.assert_array_equal(got, expected)
        assert rng.bit_generator.state == expected_rng.bit_generator.state


def test_sdnn_testing_time_is_kept_apart_from_training_time(monkeypatch, tmp_path):
    """Training that takes no time and tests that take 0.3 s each (validation, then test, every epoch):
    eval_seconds_per_epoch holds the 0.6 s, seconds_per_epoch does not."""
    _fake_sdnn(monkeypatch, [])
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1, progress=None: time.sleep(0.3) or np.zeros(len(X), int))
    path = tmp_path / "r.json"
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.2,0.2", "--limit", "100", "--epochs", "2",
         "--json", str(path))
    res = json.loads(path.read_text())
    assert len(res["eval_seconds_per_epoch"]) == len(res["seconds_per_epoch"]) == 2
    assert all(0.6 <= t < 1.5 for t in res["eval_seconds_per_epoch"]), res["eval_seconds_per_epoch"]
    assert all(t < 0.3 for t in res["seconds_per_epoch"]), res["seconds_per_epoch"]


def test_sdnn_shows_its_testing_progress_on_a_terminal(tmp_path):
    """stderr on a pseudo-terminal: the bars of the tests appear (with a redirected stderr they do not:
    test_killed_run_keeps_its_epochs_and_resume_finishes_it)."""
    import fcntl
    import pty
    import struct
    import termios
    import threading
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))   # a 0-column terminal gets no bar
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments.py"), "--train", "sdnn", "--dataset",
                          "digits", "--hidden", "20", "--set", "etas=0.2,0.2", "--limit", "100", "--n-valid", "100",
                          "--quick", "--epochs", "1", "--json", str(tmp_path / "r.json")],
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:                  # EIO: the process has closed the terminal
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=read)
    reader.start()
    assert p.wait(timeout=300) == 0
    reader.join(timeout=10)
    os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    for bar in ("testing 300 test images", "testing 100 validation images", "epoch 1/1"):
        assert bar in err, err[-2000:]


@pytest.mark.parametrize("argv,message", [
    (["--train", "bp", "--lr", "inf"], "--lr inf: the learning rate must be positive and finite"),
    (["--train", "bp", "--lr", "nan"], "--lr nan: the learning rate must be positive and finite"),
    (["--train", "bp", "--set", "lr=inf"], "--set lr=inf: lr must be finite"),
    (["--train", "sdnn", "--set", "etas=nan,0.1"], "--set etas=nan,0.1: etas must be finite"),
    (["--train", "sdnn", "--set", "g_a=-inf"], "--set g_a=-inf: g_a must be finite"),
    (["--train", "eqprop", "--set", "alphas=0.1,inf"], "--set alphas=0.1,inf: alphas must be finite"),
    (["--train", "kh", "--set", "eps0=nan"], "--set eps0=nan: eps0 must be finite"),
    (["--train", "bp", "--seed", "-1"], "--seed -1: must be >= 0"),
])
def test_non_finite_or_negative_values_are_refused_before_training(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _cli(tmp_path, *argv, "--epochs", "1")
    err = capsys.readouterr()
    assert exit_.value.code == 2 and message in err.err and "epoch" not in err.out, err


def test_an_interrupt_while_testing_keeps_only_whole_epochs(monkeypatch, tmp_path):
    """Ctrl-C in the tests after sdnn's second epoch: the JSON holds 1 epoch and every per-epoch list
    (errors, times, L0, L1, angles) has exactly 1 entry; the checkpoint is that of epoch 1."""
    _fake_sdnn(monkeypatch, [])
    calls = [0]

    def predict(net, X, cfg, rng, n_jobs=1, progress=None):   # calls: initial test, then val and test of each epoch
        calls[0] += 1
        if calls[0] == 4:                        # epoch 2's validation test
            raise KeyboardInterrupt
        return np.zeros(len(X), int)
    monkeypatch.setattr(sdnn, "predict", predict)
    path = tmp_path / "r.json"
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.2,0.2", "--limit", "100", "--epochs", "3",
         "--json", str(path))
    res = json.loads(path.read_text())
    assert res["interrupted"] and res["epochs"] == 1 and not res["finished"]
    per_epoch = [k for k, v in res.items() if isinstance(v, list) and k not in ("hidden", "command", "test_retests")]
    assert {"train_error", "test_error", "mean_L0", "mean_L1", "eval_seconds_per_epoch"} <= set(per_epoch)
    assert {k: len(res[k]) for k in per_epoch} == {k: 1 for k in per_epoch}
    import pickle
    with open(str(path) + ".ckpt", "rb") as f:
        assert pickle.load(f)["result"]["epochs"] == 1


def test_the_json_says_what_was_run(tmp_path):
    """A 300-image run says so: n_train, limit and n_valid, the seed, the command line, the resolved config,
    the commit (as git reports it) and the package versions."""
    import numba
    import scipy
    path = tmp_path / "r.json"
    argv = ["--dataset", "digits", "--quiet", "--out", str(tmp_path), "--train", "bp", "--hidden", "8", "--epochs",
            "1", "--limit", "300", "--n-valid", "100", "--seed", "2", "--json", str(path)]
    experiments.main(argv)
    res = json.loads(path.read_text())
    assert (res["n_train"], res["limit"], res["n_valid"], res["n_val"], res["n_test"], res["seed"]) == (
        300, 300, 100, 100, 500, 2)
    assert res["command"] == argv and res["config"]["sizes"] == [64, 8, 10] and res["config"]["lr"] == 1e-3
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert res["versions"]["commit"] == (commit.stdout.strip() or None)
    assert (res["versions"]["numpy"], res["versions"]["scipy"], res["versions"]["numba"]) == (
        np.__version__, scipy.__version__, numba.__version__)
    quick = tmp_path / "quick.json"                        # --quick: at most 2,000 train, 300 val, 300 test
    experiments.main([*argv[:argv.index("--limit")], "--n-valid", "100", "--quick", "--json", str(quick)])
    res = json.loads(quick.read_text())
    assert res["quick"] and (res["n_train"], res["n_val"], res["n_test"]) == (1297 - 100, 100, 300)


def test_sdnn_weights_that_stop_being_finite_flag_the_run_as_diverged(monkeypatch, tmp_path, capsys):
    """finite_or_raise reaches every array of sdnn's model (weights, state, average); a fake epoch 2 that
    leaves one weight NaN ends the run there: diverged in the JSON, 1 epoch kept, the hint on stderr."""
    model = _model(SMALL, avg=True)
    experiments.finite_or_raise(model)
    for where in (lambda m: m["net"].W[1], lambda m: m["net"].b[0], lambda m: m["state"].V[0],
                  lambda m: m["avg"].W[0]):
        broken = _model(SMALL, avg=True)
        where(broken)[0] = np.inf
        with pytest.raises(experiments.Diverged):
            experiments.finite_or_raise(broken)
    epochs = []

    def train_epoch(net, state, X, y, cfg, rng, progress=None):
        epochs.append(1)
        if len(epochs) == 2:
            net.W[0][0, 0] = np.nan
        n = len(X)
        return {"angle": np.full(n, np.nan), "L0": np.zeros(n), "L1": np.zeros(n), "correct": np.zeros(n, bool)}
    monkeypatch.setattr(sdnn, "train_epoch", train_epoch)
    monkeypatch.setattr(sdnn, "predict", lambda net, X, cfg, rng, n_jobs=1, progress=None: np.zeros(len(X), int))
    path = tmp_path / "r.json"
    _cli(tmp_path, "--train", "sdnn", "--hidden", "8", "--set", "etas=0.2,0.2", "--limit", "100", "--epochs", "3",
         "--json", str(path))
    res = json.loads(path.read_text())
    assert res["diverged"] is True and res["epochs"] == 1 and len(res["test_error"]) == 1
    err = capsys.readouterr().err
    assert "diverged: weights or state not finite" in err and "try smaller --set etas" in err

# The fields of sdnn's State as checkpoints of CHECKPOINT_FORMAT 1 hold them (main at dc779ba; Network: W, b, Y,
# Y_mask): pickle restores an object's fields as they were written, so this code must run on exactly these.
FORMAT_1_STATE = ("u_L", "u_s", "a_L", "a_s", "V", "ring_b", "ring_a", "x_L", "x_s", "out_L", "out_s",
                  "n_out_hist", "phi_out", "pos")


def test_a_format_1_checkpoint_of_sdnn_trains_on_as_the_run_it_came_from():
    """A State and Network built field by field in the format-1 layout (as unpickling a checkpoint of the
    running 60-epoch runs builds them), pickled and loaded, train on bit for bit as fresh ones."""
    import pickle
    assert experiments.CHECKPOINT_FORMAT == 1
    net = sdnn.init_weights(64, SMALL, np.random.default_rng(0))
    n, n_pre = [len(v) for v in net.b], [w.shape[1] for w in net.W]

    def per_layer(shape, dtype=np.float32):
        return tuple(np.zeros(shape(m), dtype) for m in n)

    fields = dict(u_L=per_layer(lambda m: m), u_s=per_layer(lambda m: m), a_L=per_layer(lambda m: m),
                  a_s=per_layer(lambda m: m), V=per_layer(lambda m: m), ring_b=per_layer(lambda m: (10, m)),
                  ring_a=per_layer(lambda m: (10, m)), x_L=tuple(np.zeros(m) for m in n_pre),
                  x_s=tuple(np.zeros(m) for m in n_pre), out_L=np.zeros(n[-1]), out_s=np.zeros(n[-1]),
                  n_out_hist=np.zeros((10, n[-1])), phi_out=np.zeros(n[-1], np.float32), pos=0)
    assert tuple(fields) == FORMAT_1_STATE
    old_state, old_net = object.__new__(sdnn.State), object.__new__(sdnn.Network)
    old_state.__dict__.update(fields)
    old_net.__dict__.update(W=[w.copy(order="K") for w in net.W], b=[v.copy() for v in net.b],
                            Y=[y.copy(order="K") for y in net.Y], Y_mask=[])
    model = pickle.loads(pickle.dumps({"format": 1, "model": {"net": old_net, "state": old_state}}))["model"]
    X, y = _inputs(np.random.default_rng(3), 6)
    sdnn.train_epoch(model["net"], model["state"], X, y, SMALL, np.random.default_rng(4))
    state = sdnn.init_state(net)
    sdnn.train_epoch(net, state, X, y, SMALL, np.random.default_rng(4))
    for a, b in zip(model["net"].W + model["net"].b + model["net"].Y, net.W + net.b + net.Y):
        np.testing.assert_array_equal(a, b)
    assert model["state"].pos == state.pos
    assert set(FORMAT_1_STATE) <= set(sdnn.State.__dataclass_fields__)   # new fields only with class defaults
