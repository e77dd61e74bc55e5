"""executor.py -- experiments.run_all's runs, on this machine's cores or on an existing Dask cluster.

    run_local(todo, workers=None, quiet=False)       # (path, argv) pairs, one process per core, one thread each
    run_on("tcp://HOST:8786", todo, quiet=False)     # the same runs on a Dask distributed cluster (--scheduler)

On a cluster:

    dask scheduler                                    # one machine; it prints its address, tcp://HOST:8786
    dask worker tcp://HOST:8786                       # every machine, started in a checkout of the same commit
    python experiments.py --fig 6 --scheduler tcp://HOST:8786

Each run is one task. The worker starts `python experiments.py ARGV --resume --quiet` in its working
directory (a checkout), with its own SDNN_DATA and one thread, and sends back the run's JSON and log; the
client writes them at the run's path under its --out, so that a relaunch skips the runs that finished
wherever they ran. Checkpoints stay where the run ran: an --out on a file system every worker sees lets any
worker resume any run. A worker runs as many runs at once as it has threads (`dask worker` gives it one
per core by default). dask and distributed are imported only for --scheduler.
Dask: Client, Client.submit and as_completed, https://distributed.dask.org/en/stable/api.html
"""
import json
import os
import socket
import subprocess
import sys
import time
import uuid

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
INSTALL = 'pip install "dask[distributed]" (or pip install -r requirements-cluster.txt)'


def run_local(todo, workers, quiet):
    """Run every (path, argv) of todo on this machine, `workers` processes at a time. Ctrl-C or SIGTERM stops
    the runs under way (each saves its finished epochs: a relaunch resumes them). Returns {} (no errors
    beyond the runs' logs)."""
    from experiments import lock_holder, progress, sigterm_as_interrupt, writable
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments.py")
    todo, running = list(todo), []
    workers = workers or os.cpu_count() or 1
    try:
        with sigterm_as_interrupt(), progress(len(todo), "runs", quiet) as bar:
            while todo or running:
                while todo and len(running) < workers:
                    path, argv = todo.pop(0)
                    if lock_holder(path):              # another process trains it: wait for that one
                        running.append((None, None, path))
                        continue
                    writable(path)
                    log = open(os.path.splitext(path)[0] + ".log", "a")      # noqa: SIM115 -- closed below
                    print(f"run: python experiments.py {' '.join(argv)}", flush=True)
                    running.append((subprocess.Popen([sys.executable, script, *argv, "--resume", "--quiet"], stdout=log,
                                                     stderr=subprocess.STDOUT, env=dict(os.environ, **ONE_THREAD)),
                                    log, path))
                time.sleep(0.2)
                for proc, log, path in list(running):
                    if (proc.poll() is not None) if proc else not lock_holder(path):
                        running.remove((proc, log, path))
                        if log:
                            log.close()
                        bar.update(1)
    finally:                    # interrupted (or failed here): the runs save their epochs on SIGTERM
        mine = [(proc, log) for proc, log, _ in running if proc]
        for proc, _ in mine:
            if proc.poll() is None:
                proc.terminate()
        for proc, log in mine:
            proc.wait()
            log.close()
    return {}


def task():
    """The task, defined inside a function so that Dask sends its code (cloudpickle pickles nested functions by
    value): the scheduler and the workers need nothing of this project but the worker's checkout."""
    def run_task(argv, path, env):
        """On a worker: one --train run; returns its JSON text (None if it wrote none), its log and the host."""
        script, stem = os.path.abspath("experiments.py"), os.path.splitext(path)[0]
        if not os.path.exists(script):
            raise FileNotFoundError(f"no experiments.py in {os.getcwd()} on {socket.gethostname()}: start "
                                    "`dask worker` in a checkout of this repository")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(stem + ".log", "a") as log:
            subprocess.run([sys.executable, script, *argv, "--resume", "--quiet"], stdout=log,
                           stderr=subprocess.STDOUT, env=dict(os.environ, **env), check=False)
        out = {"host": socket.gethostname()}
        for key, name in (("json", path), ("log", stem + ".log")):
            try:
                with open(name) as f:
                    out[key] = f.read()
            except OSError:
                out[key] = None
        return out
    return run_task


def connect(address):
    """A distributed.Client of the scheduler at address, or a ValueError that says what to do."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(f"--scheduler needs the dask distributed package: {INSTALL}") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise ValueError(f"--scheduler {address}: no Dask scheduler answers there ({err}); start one with "
                         f"`dask scheduler` and workers with `dask worker {address}`") from None


def slots(address):
    """How many runs the cluster at address runs at once: its workers' threads."""
    with connect(address) as client:
        return max(1, sum(client.nthreads().values()))


def run_on(address, todo, quiet):
    """Run every (path, argv) of todo on the cluster at address, write each run's JSON and log at its path
    here; returns {path: error} for the tasks that failed (a worker lost, the task raised)."""
    client = connect(address)
    from distributed import as_completed

    import experiments
    from figures import atomic_write
    commit, errors, run_task = experiments.versions()["commit"], {}, task()
    with client, experiments.progress(len(todo), "runs", quiet) as bar:
        futures = {}
        for path, argv in todo:
            print(f"run on {address}: python experiments.py {' '.join(argv)}", flush=True)
            key = f"{os.path.basename(os.path.splitext(path)[0])}-{uuid.uuid4().hex[:8]}"   # unique per launch
            futures[client.submit(run_task, argv, path, ONE_THREAD, key=key)] = path
        for future in as_completed(futures):
            path = futures[future]
            bar.update(1)
            try:
                out = future.result()
            except Exception as err:           # noqa: BLE001 -- any task failure is recorded; the rest go on
                errors[path] = f"task failed on the cluster: {type(err).__name__}: {err}"
                continue
            for text, name in ((out["json"], path), (out["log"], os.path.splitext(path)[0] + ".log")):
                if text is not None:
                    atomic_write(name, lambda f, text=text: f.write(text))
            ran = (json.loads(out["json"]).get("versions") or {}).get("commit") if out["json"] else None
            if ran and commit and ran != commit:
                print(f"warning: {os.path.basename(path)} ran commit {ran} on {out['host']}, this checkout is at "
                      f"{commit}: start the workers in a checkout of the same commit", file=sys.stderr)
    return errors
