"""Krotov-Hopfield, equilibrium propagation and the dendritic microcircuit against hand-computed cases,
finite differences, backprop twins and the papers' invariants; the CLI on the bundled digits."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import baselines as bl
import figures
from conftest import data_dir_or_skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*argv):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


# ------------------------------------------------------------------------------------------------
# Krotov-Hopfield

def test_kh_competition_hand_computed():
    I = np.array([[0.1, 0.9, 0.5, 0.7, 0.3],        # ranks: unit 1, 3, 2, 4, 0
                  [2.0, -1.0, 3.0, 0.0, 1.5]])      # ranks: unit 2, 0, 4, 3, 1
    # k = 3: the winner gets +1, only the 3rd ranked unit gets -Delta, every other unit 0
    np.testing.assert_array_equal(bl.kh_competition(I, 3, 0.4),
                                  [[0, 1, -0.4, 0, 0], [0, 0, 1, 0, -0.4]])
    np.testing.assert_array_equal(bl.kh_competition(I, 2, 0.25),
                                  [[0, 1, 0, -0.25, 0], [-0.25, 0, 1, 0, 0]])


def test_kh_ranking_kernel_matches_argsort():
    rng = np.random.default_rng(0)
    for dtype, k in ((np.float32, 7), (np.float64, 2), (np.float64, 40)):
        I = rng.standard_normal((50, 300)).astype(dtype)
        ranked = np.argsort(-I, axis=1, kind="stable")
        top, kth = bl.kh_ranked(I, k)
        np.testing.assert_array_equal(top, ranked[:, 0])
        np.testing.assert_array_equal(kth, ranked[:, k - 1])
    I = np.array([[1.0, 3.0, 3.0, 2.0]])                    # ties: the earlier unit ranks first
    assert [int(a[0]) for a in bl.kh_ranked(I, 2)] == [1, 2]


def test_kh_sparse_update_matches_the_dense_textbook_form():
    rng = np.random.default_rng(1)
    cfg = bl.KHConfig(n_hidden=50, p=3.0, k=4, dtype="float64")
    W, v = rng.standard_normal((50, 30)), rng.random((20, 30))
    I = bl.kh_currents(W, v, cfg.p)
    g = bl.kh_competition(I, cfg.k, cfg.Delta)
    dense = g.T @ v - np.sum(g * I, axis=0)[:, None] * W  # Eq. 3 as written
    np.testing.assert_allclose(bl.kh_update(W, v, cfg), dense / np.abs(dense).max(), atol=1e-12)


def lp_norm(W, p):
    return np.sum(np.abs(W) ** p, axis=1) ** (1 / p)


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5])
def test_kh_update_is_tangent_to_the_unit_lp_sphere(p):
    """For rows with ||W_mu||_p = 1 the update has no radial part: d/de sum_i |W + e dW|^p = 0 at e = 0."""
    rng = np.random.default_rng(0)
    cfg = bl.KHConfig(n_hidden=12, p=p, k=3, dtype="float64")
    W = rng.standard_normal((12, 30))
    W /= lp_norm(W, p)[:, None]
    v = rng.random((40, 30))
    dW = bl.kh_update(W, v, cfg)
    assert np.abs(dW).max() == pytest.approx(1.0)           # normalised: the largest change is 1
    e = 1e-5
    radial = (np.sum(np.abs(W + e * dW) ** p, 1) - np.sum(np.abs(W - e * dW) ** p, 1)) / (2 * e)
    assert np.abs(radial).max() < 1e-6, radial
    assert np.abs(dW).sum(axis=1).max() > 0.1               # and it does change the rows


@pytest.mark.parametrize("p", [2.0, 3.0])
@pytest.mark.parametrize("start", [1.0, 2.0])
def test_kh_rows_converge_to_and_stay_near_the_unit_lp_sphere(p, start):
    """Rows that take part in the competition end near ||W_mu||_p = 1, from the sphere or from norm 2.
    (Only near: the anti-Hebbian term pushes a row with I_mu > 0 radially outwards; the winner's pulls it
    back. Rows that never win or lose keep their start.)"""
    rng = np.random.default_rng(1)
    cfg = bl.KHConfig(n_hidden=8, p=p, k=2, Delta=0.4, eps0=0.05, epochs_unsup=100, dtype="float64")
    x = rng.random((200, 20))
    W = bl.kh_init(20, cfg, rng)
    W *= start / lp_norm(W, p)[:, None]
    W0 = W.copy()
    for epoch in range(cfg.epochs_unsup):
        for i in range(0, len(x), 10):
            bl.kh_step(W, x[i:i + 10], bl.kh_eps(epoch, cfg), cfg)
    moved = np.abs(W - W0).sum(axis=1) > 1.0                # rows that took part in the competition
    assert moved.sum() >= 5
    np.testing.assert_allclose(lp_norm(W[moved], p), 1.0, atol=0.1)
    assert abs(np.median(lp_norm(W[moved], p)) - 1) < 0.03


def test_kh_top_layer_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    cfg = bl.KHConfig(n_hidden=7, n=4.5, beta=0.3, m=6, dtype="float64")
    W = rng.standard_normal((7, 5))
    h = bl.kh_hidden(W, rng.random((9, 5)), cfg)
    h /= h.max()                                            # keep tanh away from saturation
    t = 2 * bl.one_hot(rng.integers(0, 3, 9), 3, np.float64) - 1
    S = rng.normal(0, 2, (3, 7))
    _, dS = bl.kh_top_loss(S, h, t, cfg)
    fd = np.zeros_like(S)
    for i in np.ndindex(S.shape):
        Sp, Sm = S.copy(), S.copy()
        Sp[i] += 1e-6
        Sm[i] -= 1e-6
        fd[i] = (bl.kh_top_loss(Sp, h, t, cfg)[0] - bl.kh_top_loss(Sm, h, t, cfg)[0]) / 2e-6
    np.testing.assert_allclose(dS, fd, rtol=1e-5, atol=1e-9)


def test_kh_config_errors_name_the_field():
    with pytest.raises(ValueError, match="k=1"):
        bl.KHConfig(k=1)
    with pytest.raises(ValueError, match="p=1.5"):
        bl.KHConfig(p=1.5)


# ------------------------------------------------------------------------------------------------
# Equilibrium propagation

def tiny_eqprop(sizes=(6, 5, 4, 3), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    cfg = bl.EqPropConfig(sizes=sizes, alphas=(0.1,) * (len(sizes) - 1), dtype="float64")
    params = bl.eqprop_init(cfg, rng)
    for W, b in zip(params["W"], params["b"]):
        W *= scale
        b[:] = rng.normal(0, 0.3, b.shape)
    x = rng.random((7, sizes[0]))
    d = bl.one_hot(rng.integers(0, sizes[-1], 7), sizes[-1], np.float64)
    return cfg, params, x, d, rng


@pytest.mark.parametrize("sizes", [(6, 5, 3), (6, 5, 4, 3), (8, 6, 6, 6, 4)])
def test_eqprop_energy_never_increases_during_the_free_and_clamped_phases(sizes):
    cfg, params, x, d, rng = tiny_eqprop(sizes, scale=2.0)
    s = [rng.random((len(x), n)) for n in sizes[1:]]        # an arbitrary start inside the box
    E = [bl.energy(params, x, s)]
    for _ in range(60):
        s = bl.relax(params, x, s, 1, cfg.epsilon)
        E.append(bl.energy(params, x, s))
    E = np.array(E)                                         # (steps, examples)
    assert np.all(np.diff(E, axis=0) <= 1e-12), np.diff(E, axis=0).max()
    assert np.all(E[-1] < E[0] - 1e-3)
    F = [bl.energy(params, x, s) + 0.7 * bl.cost(s, d)]     # total energy F = E + beta C, clamped phase
    for _ in range(30):
        s = bl.relax(params, x, s, 1, cfg.epsilon, beta=0.7, d=d)
        F.append(bl.energy(params, x, s) + 0.7 * bl.cost(s, d))
    assert np.all(np.diff(np.array(F), axis=0) <= 1e-12)


def fixed_point_loss(params, x, d, n_iter=400):
    s = bl.relax(params, x, bl.eqprop_zero_state(params, len(x), np.float64), n_iter, 0.5)
    return float(np.mean(bl.cost(s, d)))


def test_eqprop_update_approximates_the_gradient_of_the_loss_at_small_beta():
    """Scellier & Bengio (2017), Theorem 1: -1/beta (dF/dtheta at s^beta - at s^0) -> -dJ/dtheta,
    J = C at the free fixed point. Against central finite differences of J through the settled net."""
    cfg, params, x, d, _ = tiny_eqprop((6, 5, 4, 3), seed=3)
    s0 = bl.relax(params, x, bl.eqprop_zero_state(params, len(x), np.float64), 400, 0.5)
    beta = 1e-5
    sb = bl.relax(params, x, s0, 400, 0.5, beta, d)
    dW, db = bl.eqprop_gradient(params, x, s0, sb, beta)
    for grads, key in ((dW, "W"), (db, "b")):
        for l, (g, p) in enumerate(zip(grads, params[key])):
            fd = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + 1e-5
                up = fixed_point_loss(params, x, d)
                p[i] = old - 1e-5
                down = fixed_point_loss(params, x, d)
                p[i] = old
                fd[i] = (up - down) / 2e-5
            rel = np.linalg.norm(g + fd) / np.linalg.norm(fd)          # the update is -dJ/dtheta
            assert rel < 1e-3, f"{key}[{l}] relative error {rel:.1e}"


def test_eqprop_negative_beta_gives_the_same_gradient_estimate():
    """With beta < 0 the same formula estimates the same gradient (the sign cancels in 1/beta)."""
    cfg, params, x, d, _ = tiny_eqprop((6, 5, 3), seed=4)
    s0 = bl.relax(params, x, bl.eqprop_zero_state(params, len(x), np.float64), 2000, 0.5)
    g = [bl.eqprop_gradient(params, x, s0, bl.relax(params, x, s0, 2000, 0.5, beta, d), beta)[0][0]
         for beta in (1e-4, -1e-4)]
    np.testing.assert_allclose(g[0], g[1], rtol=1e-2, atol=1e-6)


def test_eqprop_learning_rates_decay_as_one_over_one_plus_t_over_t_half():
    """After t minibatches the change of every W_l, b_l is the undecayed one / (1 + t / t_half)."""
    import copy
    import dataclasses
    cfg, params, x, d, _ = tiny_eqprop((6, 5, 3), seed=5)
    cfg = dataclasses.replace(cfg, t_half=4, random_sign=False)
    s = bl.eqprop_zero_state(params, len(x), np.float64)
    fresh, later = copy.deepcopy(params), copy.deepcopy(params)
    later["t"] = 12                                         # alphas / (1 + 12 / 4) = / 4
    for p in (fresh, later):
        bl.eqprop_step(p, x, d, s, cfg, np.random.default_rng(0))
    assert fresh["t"] == 1 and later["t"] == 13
    for key in ("W", "b"):
        for p0, p1, p in zip(fresh[key], later[key], params[key]):
            assert np.abs(p0 - p).max() > 1e-6
            np.testing.assert_allclose(p1 - p, (p0 - p) / 4, rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# Dendritic microcircuit

def tiny_microcircuit(sizes=(6, 5, 4, 3), seed=0, **kw):
    rng = np.random.default_rng(seed)
    cfg = bl.MicrocircuitConfig(sizes=sizes, etas=(0.3,) * (len(sizes) - 1), dtype="float64", **kw)
    params = bl.microcircuit_init(cfg, rng)
    for b, c, q in zip(params["b"][1:], params["c_IP"], [cfg.att[k] / cfg.att_I for k in range(1, len(sizes) - 1)]):
        b[:] = rng.normal(0, 0.5, b.shape)                   # nonzero thresholds, kept self-predicting
        c[:] = q * b
    params["b"][0][:] = rng.normal(0, 0.5, params["b"][0].shape)
    x = rng.random((5, sizes[0]))
    y = rng.integers(0, sizes[-1], 5)
    return cfg, params, x, y


def test_microcircuit_self_predicting_state_has_silent_apical_dendrites_and_no_updates():
    cfg, params, x, y = tiny_microcircuit(eta_PI=0.1)
    fwd = bl.microcircuit_forward(params, x, cfg)
    for k in range(len(params["W_IP"])):                    # interneurons copy the layer above
        np.testing.assert_allclose(fwd["vI_hat"][k], fwd["vB_hat"][k + 1], atol=1e-12)
    teach = bl.microcircuit_teach(params, fwd, None, cfg)   # no teaching signal
    for vA in teach["vA"]:
        np.testing.assert_allclose(vA, 0, atol=1e-12)
    upd = bl.microcircuit_updates(params, fwd, teach, cfg)
    for key in ("W", "b", "W_IP", "c_IP", "W_PI"):
        for dw in upd[key]:
            np.testing.assert_allclose(dw, 0, atol=1e-12)
    u_trgt, _ = bl.microcircuit_targets(y, 3, cfg)          # with a teacher every layer changes
    upd = bl.microcircuit_updates(params, fwd, bl.microcircuit_teach(params, fwd, u_trgt, cfg), cfg)
    assert all(np.abs(dw).max() > 1e-4 for dw in upd["W"])


def test_microcircuit_interneuron_to_pyramid_rule_descends_the_free_apical_potential():
    """Eq. 9, dW^PI = eta (0 - v_A) r^I^T, is gradient descent on J = 1/2 mean ||v_A||^2 with the
    interneurons' rates fixed: against central finite differences of J, and J falls after the step."""
    cfg, params, x, _ = tiny_microcircuit(eta_PI=0.5)
    rng = np.random.default_rng(7)
    for W in params["W_IP"]:                                 # leave the self-predicting state
        W += rng.normal(0, 0.5, W.shape)
    fwd = bl.microcircuit_forward(params, x, cfg)

    def J(k):                                                # free apical potential, forward rates
        rI = bl.phi(fwd["vI_hat"][k])
        vA = fwd["r"][k + 2] @ params["B"][k].T + rI @ params["W_PI"][k].T
        return 0.5 * np.mean(np.sum(vA ** 2, axis=1))

    upd = bl.microcircuit_updates(params, fwd, bl.microcircuit_teach(params, fwd, None, cfg), cfg)
    for k, W in enumerate(params["W_PI"]):
        fd = np.zeros_like(W)
        for i in np.ndindex(W.shape):
            old = W[i]
            W[i] = old + 1e-6
            up = J(k)
            W[i] = old - 1e-6
            fd[i] = (up - J(k)) / 2e-6
            W[i] = old
        eta = cfg.eta_PI / W.shape[1]                        # per population: / n_(k+1) interneurons
        np.testing.assert_allclose(upd["W_PI"][k], -eta * fd, rtol=1e-5, atol=1e-10)
        before = J(k)
        W += upd["W_PI"][k]
        assert J(k) < before


def test_microcircuit_rates_decay_as_one_over_one_plus_t_over_t_half():
    """After t minibatches every change (W, b, W^IP, c^IP, W^PI) is the undecayed one / (1 + t / t_half)."""
    import copy
    cfg, params, x, y = tiny_microcircuit(eta_PI=0.5, t_half=2)
    for W in params["W_IP"]:                                 # off the self-predicting state: W^PI learns
        W += np.random.default_rng(3).normal(0, 0.5, W.shape)
    u_trgt, r_trgt = bl.microcircuit_targets(y, 3, cfg)
    fresh, later = copy.deepcopy(params), copy.deepcopy(params)
    later["t"] = 4                                          # rates / (1 + 4 / 2) = / 3
    for p in (fresh, later):
        bl.microcircuit_step(p, x, u_trgt, r_trgt, cfg)
    assert fresh["t"] == 1 and later["t"] == 5
    for key in ("W", "b", "W_IP", "c_IP", "W_PI"):
        for p0, p1, p in zip(fresh[key], later[key], params[key]):
            assert np.abs(p0 - p).max() > 1e-6
            np.testing.assert_allclose(p1 - p, (p0 - p) / 3, rtol=1e-9, atol=1e-14)


def test_microcircuit_with_symmetric_feedback_follows_backprop_for_weak_nudging():
    """Sacramento et al. (2018): for weak nudging the hidden update is backprop's, with the output error
    e = phi(u_N) - phi(v^_N) sent back through B_k. With B_k = W_(k+1)^T the direction must match a
    NumPy backprop of e through the bottom-up network (cosine ~ 1)."""
    cfg, params, x, y = tiny_microcircuit((6, 5, 4, 3), seed=1, g_som=1e-4)
    for k, B in enumerate(params["B"]):
        B[:] = params["W"][k + 1].T                          # symmetric feedback
        params["W_PI"][k][:] = -B
    fwd = bl.microcircuit_forward(params, x, cfg)
    u_trgt, _ = bl.microcircuit_targets(y, 3, cfg)
    upd = bl.microcircuit_updates(params, fwd, bl.microcircuit_teach(params, fwd, u_trgt, cfg), cfg)
    r, vB = fwd["r"], fwd["vB_hat"]
    delta = bl.phi(vB[-1] + cfg.lambda_out * (u_trgt - vB[-1])) - bl.phi(vB[-1])   # output error
    for k in range(len(params["W"]) - 2, -1, -1):           # backprop twin, top hidden layer down
        delta = (delta @ params["W"][k + 1]) * r[k + 1] * (1 - r[k + 1])
        bp = delta.T @ r[k]
        mc = upd["W"][k]
        cos = np.sum(bp * mc) / (np.linalg.norm(bp) * np.linalg.norm(mc))
        assert cos > 0.999, f"layer {k + 1}: cosine {cos}"


def test_microcircuit_defaults_cover_one_and_two_hidden_layers_and_name_etas_otherwise():
    """The 1-hidden-layer default constructs and takes a finite step that changes every weight layer; the
    2-hidden-layer row is the class default; deeper nets without etas get an error that names etas."""
    cfg = bl.MicrocircuitConfig(**bl.microcircuit_defaults((20, 8, 3)))
    assert cfg.sizes == (20, 8, 3) and cfg.etas == bl.MICROCIRCUIT_ETAS[1] and len(cfg.etas) == 2
    rng = np.random.default_rng(0)
    params = bl.microcircuit_init(cfg, rng)
    before = [W.copy() for W in params["W"]]
    x, y = rng.random((10, 20)).astype(cfg.dtype), rng.integers(0, 3, 10)
    u_trgt, r_trgt = bl.microcircuit_targets(y, 3, cfg)
    L = bl.microcircuit_step(params, x, u_trgt, r_trgt, cfg)
    assert np.isfinite(L) and all(np.isfinite(W).all() for W in params["W"] + params["W_IP"] + params["W_PI"])
    assert all(np.abs(W - W0).max() > 0 for W, W0 in zip(params["W"], before))
    assert bl.microcircuit_predict(params, x, cfg).shape == (10,)
    assert bl.microcircuit_defaults((784, 500, 500, 10))["etas"] == bl.MicrocircuitConfig().etas
    deep = bl.microcircuit_defaults((20, 8, 8, 8, 3))
    assert "etas" not in deep
    with pytest.raises(ValueError, match="etas=.*4 for sizes"):
        bl.MicrocircuitConfig(**deep)
    with pytest.raises(ValueError, match=r"etas=\(0\.1,\).*default for 1 hidden layer"):
        bl.MicrocircuitConfig(sizes=(20, 8, 3), etas=(0.1,))
    assert len(bl.MicrocircuitConfig(**deep, etas=(0.5, 0.1, 0.1, 0.1)).etas) == 4


def test_microcircuit_teaching_step_lowers_the_loss_on_its_batch():
    cfg, params, x, y = tiny_microcircuit(seed=2)
    u_trgt, r_trgt = bl.microcircuit_targets(y, 3, cfg)
    before = bl.microcircuit_step(params, x, u_trgt, r_trgt, cfg)
    after = bl.microcircuit_step(params, x, u_trgt, r_trgt, cfg)
    assert after < before


# ------------------------------------------------------------------------------------------------
# Command line: learning on digits, same seed same result, divergence, bad settings, the figure

RUNS = {
    "kh": ["--hidden", "100", "--epochs", "15", "--lr", "1e-3", "--set", "epochs_unsup=10", "p=2", "k=2", "eps0=0.04"],
    "eqprop": ["--hidden", "100", "--epochs", "8"],
    "microcircuit": ["--hidden", "100", "100", "--epochs", "30", "--lr", "0.3"],
}


@pytest.mark.parametrize("rule", sorted(RUNS))
def test_each_rule_learns_digits_and_the_same_seed_gives_the_same_curve(rule, tmp_path):
    res = []
    for i in range(2):
        path = tmp_path / f"{rule}{i}.json"
        r = cli("--train", rule, "--dataset", "digits", *RUNS[rule], "--quiet", "--seed", "5", "--json", str(path))
        assert r.returncode == 0, r.stderr
        res.append(json.loads(path.read_text()))
    assert res[0]["test_error"] == res[1]["test_error"] and res[0]["val_error"] == res[1]["val_error"]
    assert res[0]["rule"] == rule and not res[0]["diverged"]
    # chance is 90 % error; BP's small MLP reaches about 3 % on the validation digits
    assert res[0]["val_error"][-1] < 0.3 and res[0]["test_error"][-1] < 0.4, (res[0]["val_error"], res[0]["test_error"])


@pytest.mark.parametrize("rule,argv", [
    ("kh", ["--hidden", "20", "--lr", "1e300", "--set", "epochs_unsup=1"]),
    ("eqprop", ["--hidden", "20", "--set", "alphas=1e300,1e300"]),
    ("microcircuit", ["--hidden", "20", "20", "--lr", "1e300"]),
])
def test_divergence_is_reported_in_the_json_without_a_traceback(rule, argv, tmp_path):
    path = tmp_path / "d.json"
    r = cli("--train", rule, "--dataset", "digits", *argv, "--epochs", "3", "--quiet", "--json", str(path))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "diverged" in r.stderr
    res = json.loads(path.read_text())
    assert res["diverged"] is True and res["epochs"] < 3


@pytest.mark.parametrize("argv,words", [
    (["--train", "kh", "--set", "q=3"], "KEY one of .*Delta"),
    (["--train", "kh", "--set", "k=two"], "k takes a int"),
    (["--train", "eqprop", "--hidden", "50", "50"], "alphas=.*one positive learning rate per weight layer"),
    (["--train", "eqprop", "--lr", "0.1"], "alphas"),
    (["--train", "microcircuit", "--hidden", "20", "--set", "etas=0.1"], "etas="),
    (["--train", "kh", "--hidden", "20", "20"], "one hidden layer"),
])
def test_bad_settings_are_clear_errors(argv, words, tmp_path):
    r = cli(*argv, "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert re.search(words, r.stderr), r.stderr


def test_kh_fields_figure_quick(tmp_path):
    data = data_dir_or_skip("mnist")
    r = cli("--fig", "kh-fields", "--quick", "--quiet", "--data-dir", data, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "kh-fields.png").exists()
    W = figures.load_data(str(tmp_path / "kh-fields"))["W"]
    assert W.shape == (100, 784)
    r = cli("--fig", "kh-fields", "--replot", "--out", str(tmp_path))    # redraw without training
    assert r.returncode == 0, r.stderr
