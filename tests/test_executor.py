"""Many runs at once: cross-validation folds and test-free tuning runs, the local executor (kill and
relaunch) and the Dask executor (the same results as the local one)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import datasets
import experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(path) as f:
        return f.read()


def test_folds_partition_the_whole_training_set(tmp_path):
    """--fold I/K validates on the I-th of K contiguous blocks of the whole training set (train + the usual
    validation images) and trains on the rest: over I = 1..K every training image is validated on once."""
    x_all, y_all = datasets.load("digits", n_valid=0)["train"]          # 1,297 images
    seen = []
    for i in range(1, 4):
        data = experiments.load_split(experiments.parse(["--train", "bp", "--dataset", "digits", "--fold", f"{i}/3"]))
        a, b = [0, 432, 864, 1297][i - 1:i + 1]                          # floor(n * i / 3), by hand
        np.testing.assert_array_equal(data.x_val, x_all[a:b])
        np.testing.assert_array_equal(data.x, np.concatenate([x_all[:a], x_all[b:]]))
        np.testing.assert_array_equal(data.y, np.concatenate([y_all[:a], y_all[b:]]))
        assert len(data.x_test) == 500                                   # the test set is untouched
        seen.append(data.y_val)
    np.testing.assert_array_equal(np.concatenate(seen), y_all)


def test_no_test_run_never_sees_the_test_set_and_gets_its_own_name(tmp_path):
    argv = ["--train", "bp", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path), "--quiet"]
    data = experiments.load_split(experiments.parse([*argv, "--no-test"]))
    assert len(data.x_test) == 0 and data.n_out == 10
    experiments.main([*argv, "--no-test"])
    path = experiments.run_path([*argv, "--no-test"])
    res = json.loads(read(path))
    assert res["test_error"] == [None, None] and all(0 < v < 1 for v in res["val_error"])
    names = {path, experiments.run_path(argv), experiments.run_path([*argv, "--fold", "1/3"]),
             experiments.run_path([*argv, "--fold", "2/3"])}
    assert len(names) == 4                                               # four runs, four files
    # the same result without the new keys is named as the plain run: old runs keep their names
    plain = {k: v for k, v in res.items() if k not in ("fold", "no_test")}
    assert experiments.run_name(plain) == os.path.basename(experiments.run_path(argv))[:-5]


@pytest.mark.parametrize("argv,message", [
    (["--fold", "0/3"], "--fold 0/3: give I/K"),
    (["--fold", "4/3"], "--fold 4/3: give I/K"),
    (["--fold", "1/1"], "--fold 1/1: give I/K"),
    (["--fold", "a/b"], "--fold a/b: give I/K"),
    (["--fold", "1/3", "--n-valid", "100"], "--fold and --n-valid: give one of them"),
])
def test_bad_fold_is_refused_with_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit):
        experiments.parse(["--train", "bp", *argv])
    assert message in capsys.readouterr().err


def test_no_test_refuses_options_that_need_the_test_set(capsys):
    with pytest.raises(SystemExit):
        experiments.parse(["--train", "sdnn", "--no-test", "--retests", "3"])
    assert "--no-test leaves the test set out" in capsys.readouterr().err


def _sweep(out, epochs=40):
    """Three small runs (bp on the digits, 100 minibatches per epoch, each epoch saved)."""
    return [["--train", "bp", "--dataset", "digits", "--hidden", "32", "--batch", "10", "--epochs", str(epochs),
             "--lr", str(lr), "--out", str(out)] for lr in (1e-3, 2e-3, 3e-3)]


def test_a_run_listed_with_two_lengths_runs_once_to_the_longer(tmp_path, capsys):
    """One run (its name leaves out the epochs) asked for 3 and for 1 epochs, in either order: it is
    launched once, to 3 epochs, and both commands get it (the shorter one is served by the longer run)."""
    for order in ((3, 1), (1, 3)):
        out = tmp_path / str(order[0])
        argvs = [_sweep(out, epochs=e)[0] for e in order]
        capsys.readouterr()
        results = experiments.run_all(argvs, workers=2, quiet=True)
        launched = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run: ")]
        assert launched == [f"run: python experiments.py {' '.join(_sweep(out, epochs=3)[0])}"], order
        assert [r.get("epochs") for r in results] == [3, 3] and results[0]["path"] == results[1]["path"]


def test_a_killed_sweep_relaunched_runs_only_the_unfinished_runs(tmp_path, capsys):
    """Kill the sweep (SIGTERM to run_all) while its second run is under way: the relaunch does not run the
    first again, resumes the second from its checkpoint, starts the third, and the resumed run ends as an
    uninterrupted one does."""
    argvs = _sweep(tmp_path)
    paths = [experiments.run_path(a) for a in argvs]
    code = f"import experiments; experiments.run_all({argvs!r}, workers=1, quiet=True)"
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def epochs(path):
        try:
            return json.loads(read(path))["epochs"]
        except (OSError, ValueError, KeyError):
            return 0
    deadline = time.time() + 300
    while not (epochs(paths[0]) == 40 and 5 <= epochs(paths[1]) < 40) and time.time() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.02)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) != 0
    killed_at = json.loads(read(paths[1]))
    assert killed_at["interrupted"] and 5 <= killed_at["epochs"] < 40 and not os.path.exists(paths[2])
    first_log = read(paths[0][:-5] + ".log")

    capsys.readouterr()
    results = experiments.run_all(argvs, workers=1, quiet=True)
    launched = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run: ")]
    assert launched == [f"run: python experiments.py {' '.join(a)}" for a in argvs[1:]]     # not the first
    assert read(paths[0][:-5] + ".log") == first_log
    # resumed from its checkpoint (written after the JSON of each epoch: a kill between the two leaves one
    # epoch less in the checkpoint, which the resumed run trains again)
    done = re.search(r"resuming from .* (\d+) epochs done", read(paths[1][:-5] + ".log"))
    assert done and killed_at["epochs"] - 1 <= int(done.group(1)) <= killed_at["epochs"]
    assert all(r["finished"] and r["epochs"] == 40 for r in results)
    fresh = experiments.run_all(_sweep(tmp_path / "fresh")[1:2], quiet=True)[0]            # never interrupted
    assert results[1]["test_error"] == fresh["test_error"] and results[1]["val_error"] == fresh["val_error"]


def test_a_sweep_on_a_dask_cluster_gives_the_local_executors_results(tmp_path, capsys):
    """The same runs through a Dask LocalCluster of 2 single-threaded worker processes and through the local
    executor: the same per-run errors, bit for bit, and the JSONs written under the client's --out."""
    distributed = pytest.importorskip("distributed")
    argvs = {where: [*_sweep(tmp_path / where, epochs=3),
                     ["--train", "sdnn", "--dataset", "digits", "--hidden", "20", "--set", "etas=0.2,0.2",
                      "--limit", "300", "--epochs", "2", "--out", str(tmp_path / where)]]
             for where in ("local", "dask")}
    local = experiments.run_all(argvs["local"], quiet=True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        remote = experiments.run_all(argvs["dask"], quiet=True, scheduler=c.scheduler_address)
        assert capsys.readouterr().out.count(f"run on {c.scheduler_address}: ") == 4
        starts = {read(r["path"][:-5] + ".log").count("epoch   1 ") for r in remote}
    assert starts == {1}                                         # each run ran once
    for a, b in zip(local, remote):
        assert "error" not in a and "error" not in b
        assert os.path.basename(a["path"]) == os.path.basename(b["path"]) and b["path"].startswith(str(tmp_path / "dask"))
        for key in ("train_error", "val_error", "test_error", "config", "n_train"):
            assert a[key] == b[key], key
    again = experiments.run_all(argvs["dask"], quiet=True, scheduler="tcp://127.0.0.1:1")   # all finished:
    assert [r["test_error"] for r in again] == [r["test_error"] for r in remote]            # no cluster needed


def test_scheduler_errors_name_the_fix(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        experiments.parse(["--fig", "6", "--scheduler", "localhost"])
    assert "give the scheduler's address, tcp://HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiments.parse(["--train", "bp", "--scheduler", "tcp://localhost:8786"])
    assert "it does nothing here" in capsys.readouterr().err
    argv = _sweep(tmp_path, epochs=1)[:1]
    monkeypatch.setitem(sys.modules, "distributed", None)          # as if not installed: import fails
    with pytest.raises(ValueError, match=r'pip install "dask\[distributed\]"'):
        experiments.run_all(argv, scheduler="tcp://127.0.0.1:1")
    monkeypatch.undo()
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="no Dask scheduler answers there.*dask scheduler"):
        experiments.run_all(argv, scheduler="tcp://127.0.0.1:1")


def test_bench_sweep_times_serial_and_parallel_rounds_and_divides_right(monkeypatch):
    """The throughput benchmark (studies.bench_sweep; the measurement itself is `--bench sweep`, not a timed
    test) against a stand-in executor whose sweep takes 0.08 s per run divided among its workers: the
    one-per-core time is half the serial one, each the mean of its two rounds, and every run is asked for."""
    import studies
    calls = []

    def run_all(argvs, workers=None, quiet=False, scheduler=None):
        calls.append((len(argvs), workers or 1))
        time.sleep(0.08 * len(argvs) / (workers or 1))
        return [{} for _ in argvs]
    monkeypatch.setattr(experiments, "run_all", run_all)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    out = studies.bench_sweep(quick=True)
    assert calls == [(1, 1), (4, 1), (4, 2), (4, 2), (4, 1)]
    assert out["serial_s"] == pytest.approx(0.32, rel=0.25) and out["ratio"] == pytest.approx(0.5, rel=0.25)
