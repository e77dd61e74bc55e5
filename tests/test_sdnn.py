"""Tests of sdnn.py against independent answers: NumPy twins, paper invariants, direct convolutions,
closed-form steady states and the original code's initialisation statistics. The whole file runs in about a minute."""
import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from conftest import data_dir_or_skip

import datasets
import sdnn

SMALL = replace(sdnn.PAPER, hidden=(40,))                       # fast variants of the presets
SMALL_ORIG = replace(sdnn.ORIGINAL_CODE, hidden=(40,))


def _inputs(rng, n=5, n_in=64):
    x = rng.random((n, n_in))
    x[x < 0.5] = 0.0                                            # sparse, like MNIST
    return x, rng.integers(0, 10, n)


def _run(cfg, jit, n_in=64, n=3, seed=1):
    rng = np.random.default_rng(seed)
    X, y = _inputs(np.random.default_rng(99), n, n_in)
    net = sdnn.init_weights(n_in, cfg, rng)
    state = sdnn.init_state(net)
    infos = [sdnn.train_example(net, state, X[i], y[i], cfg, rng, record=True, jit=jit) for i in range(n)]
    return net, state, infos


# ---- Numba kernels equal their NumPy twins (same random draws) ----

@pytest.mark.parametrize("cfg", [
    SMALL,
    SMALL_ORIG,
    replace(SMALL, g_a=0.05, spiking_feedback=False),
    replace(SMALL, hidden=(30, 20), etas=(0.2, 0.2, 0.1), stochastic_plateau=True, symmetric_feedback=True,
            symmetric_noise_sd=0.05, sparse_feedback=0.8),
    replace(SMALL, hidden=(), etas=(0.19,)),
], ids=["paper", "original_code", "rate_feedback_g_a", "two_hidden_variants", "no_hidden"])
def test_phase_kernel_equals_numpy_twin(cfg):
    net_k, st_k, inf_k = _run(cfg, jit=True)
    net_n, st_n, inf_n = _run(cfg, jit=False)
    for a, b in zip(inf_k, inf_n):
        assert a["n_spikes"] == b["n_spikes"]                   # identical spike trains
        for ra, rb in zip(a["trace_t"], b["trace_t"]):
            np.testing.assert_allclose(ra, rb, atol=1e-4)
    for Wk, Wn in zip(net_k.W + net_k.b, net_n.W + net_n.b):
        np.testing.assert_allclose(Wk, Wn, rtol=1e-5, atol=1e-6)
    for name in ("u_L", "u_s", "a_L", "a_s", "V", "x_L", "x_s"):
        for a, b in zip(getattr(st_k, name), getattr(st_n, name)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    assert st_k.pos == st_n.pos


@pytest.mark.parametrize("cfg", [SMALL, SMALL_ORIG, replace(SMALL, hidden=(30, 20), etas=(0.2, 0.2, 0.1), g_a=0.0)],
                         ids=["paper", "original_code", "two_hidden_g_a_0"])
def test_test_phase_kernel_equals_numpy_twin(cfg):
    """The test phase (learn=False skips the learning sums) gives the same output averages and spikes."""
    X, _ = _inputs(np.random.default_rng(5), 3)
    net = sdnn.init_weights(64, cfg, np.random.default_rng(0))
    for x in X:
        r = [sdnn.run_phase(net, sdnn.init_state(net), x, 120, None, cfg, np.random.default_rng(7), jit=jit,
                            learn=False, window=(cfg.t_settle, 120)) for jit in (True, False)]
        assert r[0]["n_spikes"] == r[1]["n_spikes"]
        np.testing.assert_allclose(r[0]["V"][-1], r[1]["V"][-1], rtol=1e-5, atol=1e-5)
        # test_example's own kernel (zero state, candidates numbered in the kernel) against the twin
        v = [sdnn.test_example(net, x, cfg, np.random.default_rng(8), jit=jit) for jit in (True, False)]
        np.testing.assert_allclose(v[0], v[1], rtol=1e-5, atol=1e-5)


def test_rate_kernel_equals_numpy_twin():
    rng = np.random.default_rng(0)
    X, y = _inputs(rng, 20)
    cfg = replace(sdnn.RATE, hidden=(30, 20), etas=(0.2, 0.2, 0.1))
    nets = [sdnn.init_weights(64, cfg, np.random.default_rng(3)) for _ in range(2)]
    r_k = sdnn._rate_train_many(nets[0], X, y, cfg, jit=True)
    r_n = sdnn._rate_train_many(nets[1], X, y, cfg, jit=False)
    np.testing.assert_allclose(r_k["L1"], r_n["L1"], rtol=1e-4)
    np.testing.assert_allclose(r_k["L0"], r_n["L0"], rtol=1e-3, atol=1e-9)
    for a, b in zip(nets[0].W + nets[0].b, nets[1].W + nets[1].b):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ---- the fast path against the plain paper path, reference_phase (Eqs 11-22) ----

def _fixed_net(hidden, seed=0):
    """64-hidden-10 weights that put most units where sigma is steep: with s ~ 0.1 per input, the
    spread 1.2 / sqrt(0.015 n_in) gives dendritic potentials of SD ~1.2; Y spread 5 gives V_a ~ +-2."""
    rng = np.random.default_rng(seed)
    sizes = (64,) + hidden + (10,)
    W = [rng.normal(0, 1.2 / math.sqrt(0.015 * n_in), (n_out, n_in)) for n_in, n_out in pairwise(sizes)]
    b = [rng.normal(0, 0.5, m) for m in sizes[1:]]
    Y = [rng.normal(0, 5.0, (m, 10)) for m in hidden]
    net = sdnn.Network([np.asfortranarray(w, np.float32) for w in W], [v.astype(np.float32) for v in b],
                       [np.asfortranarray(y, np.float32) for y in Y])
    return net, rng.random(64)                                  # the image: pixels in [0, 1]


@pytest.mark.parametrize("hidden,n", [((20,), 300), ((20, 15), 200)], ids=["64-20-10", "64-20-15-10"])
def test_run_phase_agrees_with_reference_phase_in_distribution(hidden, n):
    """run_phase (event-driven, thinning, float32) against reference_phase (Eqs 11-22 step by step,
    float64): n phases each from a fresh state, same weights and image, forward and target phase, with
    the paper's window (T = 60, settle 30) and an early one that sees the rise of the PSPs (T = 20,
    settle 0); g_a = 0.05 so that the apical input reaches the soma. For every unit and every window
    mean (V_a and V of each hidden layer, V and phi_out of the output), with sample variances (ddof 1),
        z = |mean_fast - mean_ref| / sqrt(var_fast / n + var_ref / n)   must be <= 4.5.
    P(|z| > 4.5) = 7e-6 per value if both sample the same model: 2e-3 over the 240 or 360 values.
    Checked to fail when reference_phase drops the teaching current (max z 321), uses g_l = 0.12 in
    its somata (16) or tau_L = 12 in its PSPs (6.2); it passes at 3.1. Not detected: a one-step lag of
    the PSPs (the code's kappa(t - u + 1), 2.9)."""
    for T, settle in ((60, 30), (20, 0)):
        cfg = replace(sdnn.PAPER, hidden=hidden, etas=(0.2,) * (len(hidden) + 1), g_a=0.05, t_settle=settle)
        net, x = _fixed_net(hidden)
        for label in (None, 3):
            rng = np.random.default_rng(1)
            fast = [sdnn.run_phase(net, sdnn.init_state(net), x, T, label, cfg, rng) for _ in range(n)]
            ref = [sdnn.reference_phase(net, x, T, label, cfg, rng) for _ in range(n)]
            for key in ("V_a", "V", "phi_out"):
                a, b = (np.array([np.hstack(o[key]) for o in outs]) for outs in (fast, ref))   # (n, units)
                z = np.abs(a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / n + b.var(0, ddof=1) / n)
                assert z.max() <= 4.5, (T, label, key, np.argmax(z), z.max())


def test_reference_phase_names_the_fields_it_does_not_cover():
    net, x = _fixed_net((20,))
    for change in ({"psp": "truncated10"}, {"spiking_feedback": False}, {"stochastic_plateau": True},
                   {"window": "last20"}, {"teach_scale": "literal"}):
        cfg = replace(sdnn.PAPER, hidden=(20,), **change)
        with pytest.raises(ValueError, match=f"Config.{next(iter(change))}="):
            sdnn.reference_phase(net, x, 60, None, cfg, np.random.default_rng(0))


# ---- PSP kernel (Eqs 11-12) ----

def test_kappa_integrates_to_one_and_discrete_masses():
    cfg = sdnn.PAPER
    t = np.linspace(0, 400, 400001)
    assert abs(np.trapezoid(sdnn.kappa(t, cfg), t) - 1.0) < 1e-6          # continuous integral
    assert abs(sdnn.kappa(np.arange(1, 4000), cfg).sum() - 0.997) < 1e-3  # sum of kappa(1..) sampled at dt = 1 ms
    assert abs(sdnn.kappa(np.arange(1, 11), cfg).sum() - 0.510) < 1e-3   # the code's truncation


@pytest.mark.parametrize("lag", [False, True])
def test_two_trace_recursion_equals_direct_convolution(lag):
    cfg = sdnn.PAPER
    n = np.random.default_rng(0).poisson(0.3, size=(200, 3)).astype(float)
    s = sdnn.psp_traces(n, cfg, lag=lag)
    k = sdnn.kappa(np.arange(200) + (1 if lag else 0), cfg)          # kappa(t - u) or kappa(t - u + 1)
    for j in range(3):
        np.testing.assert_allclose(s[:, j], np.convolve(n[:, j], k)[:200], atol=1e-12)


def _direct_s(counts, cfg, lo, hi):
    """Window mean of the filtered spike train by direct convolution (the independent answer)."""
    T = counts.shape[0]
    if cfg.psp == "exact":
        k = sdnn.kappa(np.arange(T), cfg)
    else:
        k = np.zeros(T)
        k[:10] = sdnn.kappa(np.arange(1, 11), cfg)              # newest spike weighs kappa(1)
    s = np.stack([np.convolve(counts[:, j], k)[:T] for j in range(counts.shape[1])], axis=1)
    return s, s[lo:hi].mean(axis=0)


@pytest.mark.parametrize("cfg", [SMALL, SMALL_ORIG], ids=["exact", "truncated10"])
def test_event_driven_sums_equal_direct_convolution(cfg):
    """s-bar (window mean of the hidden PSPs, carried across two phases), the end-of-phase traces and
    the output dendrite V_b = W s + b, all checked against a direct convolution of the recorded spikes."""
    rng = np.random.default_rng(5)
    net = sdnn.init_weights(64, cfg, rng)
    state = sdnn.init_state(net)
    x = _inputs(rng, 1)[0][0]
    T1, T2 = 57, 63
    o1 = sdnn.run_phase(net, state, x, T1, None, cfg, rng, record=True)
    o2 = sdnn.run_phase(net, state, x, T2, 3, cfg, rng, record=True)
    counts = np.concatenate([o1["trace"][0][:, 3], o2["trace"][0][:, 3]])    # hidden spikes (T1+T2, 40)
    lo, hi = (T1 + 30, T1 + T2) if cfg.window == "after_settle" else (T1 + T2 - 20, T1 + T2)
    s, s_bar = _direct_s(counts, cfg, lo, hi)
    np.testing.assert_allclose(o2["s"][1], s_bar, rtol=1e-9, atol=1e-12)
    Vb_direct = s @ net.W[1].T.astype(np.float64) + net.b[1]
    np.testing.assert_allclose(o2["trace"][1][:, 0], Vb_direct[T1:], atol=2e-4)
    if cfg.psp == "exact":   # end traces: x_L = sum_u d_L^(T-1-u) n_u
        decay = cfg.d_L ** np.arange(T1 + T2 - 1, -1, -1)
        np.testing.assert_allclose(state.x_L[1], decay @ counts, rtol=1e-9)


@pytest.mark.parametrize("cfg", [SMALL, SMALL_ORIG], ids=["exact", "truncated10"])
def test_apical_potential_equals_direct_convolution_of_output_spikes(cfg):
    """V0a(t) = Y s1(t), with the output spikes emitted before step t (Eq 13, the code's update order): kernel weight
    kappa(t - u) for a spike at step u < t (both conventions agree here: the newest weighs kappa(1))."""
    rng = np.random.default_rng(8)
    net = sdnn.init_weights(64, cfg, rng)
    state = sdnn.init_state(net)
    x = _inputs(rng, 1)[0][0]
    o = sdnn.run_phase(net, state, x, 120, 2, cfg, rng, record=True)
    n_out = o["trace"][1][:, 3]                                   # (T, 10) output spikes
    T = len(n_out)
    k = sdnn.kappa(np.arange(T), cfg)                             # kappa(0) = 0
    if cfg.psp == "truncated10":
        k[11:] = 0.0
    s1 = np.stack([np.convolve(n_out[:, j], k)[:T] for j in range(10)], axis=1)    # sum_{u<t} kappa(t-u) n_u
    np.testing.assert_allclose(o["trace"][0][:, 1], s1 @ net.Y[0].T.astype(np.float64), atol=2e-4)
    lo = 30 if cfg.window == "after_settle" else T - 20
    np.testing.assert_allclose(o["V_a"][0], (s1[lo:] @ net.Y[0].T).mean(0), atol=2e-4)


def test_postsynaptic_traces_stay_equal_to_W_times_presynaptic_traces():
    """After weight updates (Eqs 29, 35) the event-driven traces u = W x are corrected exactly."""
    cfg = replace(SMALL, symmetric_feedback=True)
    net, state, _ = _run(cfg, jit=True, n=4)
    for k in range(2):
        np.testing.assert_allclose(state.u_L[k], net.W[k] @ state.x_L[k], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(state.u_s[k], net.W[k] @ state.x_s[k], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(state.a_L[0], net.Y[0] @ state.out_L, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(state.a_s[0], net.Y[0] @ state.out_s, rtol=1e-4, atol=1e-3)


def test_truncated_ring_equals_new_W_times_the_last_10_steps_of_spikes():
    """The code's kernel: after the update, the output layer's ring holds W1(new) n_hidden(t) for the
    last 10 steps of the target phase, n_hidden(t) read from the recorded spike counts."""
    net, state, infos = _run(SMALL_ORIG, jit=True, n=3)
    counts = infos[-1]["trace_t"][0][-10:, 3]                   # hidden spikes per step, last 10 steps
    assert counts.sum() > 0
    for i in range(10):
        np.testing.assert_allclose(state.ring_b[1][(state.pos - 10 + i) % 10], net.W[1] @ counts[i],
                                   rtol=1e-4, atol=1e-4)


# ---- paper invariants ----

@pytest.mark.parametrize("g_a", [0.0, 0.05, 0.6])
def test_soma_settles_to_steady_state(g_a):
    """Eq 14 at steady state: V0 = k_b V0b + g_a/(g_l+g_b+g_a) V0a; with g_a = 0, V0 = k_b V0b (Eq 34).
    No input spikes (V0b = b0) and rate feedback from a silent output (V0a = Y phi_max sigma(0))."""
    cfg = replace(SMALL, g_a=g_a, spiking_feedback=False)
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(64, cfg, rng)
    net.W[1][:] = 0.0
    net.b[1][:] = 0.0                                            # output V1 -> 0, phi_out -> phi_max / 2
    state = sdnn.init_state(net)
    out = sdnn.run_phase(net, state, np.zeros(64), 200, None, cfg, rng, record=True)
    V_a = net.Y[0] @ np.full(10, cfg.phi_max / 2)
    expected = cfg.k_b * net.b[0] + g_a / (cfg.g_l + cfg.g_b + g_a) * V_a
    np.testing.assert_allclose(out["trace"][0][-1, 2], expected, rtol=1e-5, atol=1e-5)
    if g_a == 0:
        np.testing.assert_allclose(out["V"][0], cfg.k_b * net.b[0], rtol=1e-5)


def test_hidden_update_zero_when_plateaus_equal():
    rng = np.random.default_rng(0)
    alpha = rng.random(50)
    assert not sdnn.hidden_error(alpha, alpha, rng.normal(size=50), sdnn.PAPER).any()    # Eq 33
    # whole network: Y = 0 makes alpha^t = alpha^f = 1/2, so W0 and b0 must not change at all
    net = sdnn.init_weights(64, SMALL, rng)
    net.Y[0][:] = 0.0
    W0, b0, W1 = net.W[0].copy(), net.b[0].copy(), net.W[1].copy()
    state = sdnn.init_state(net)
    x, y = _inputs(rng, 3)
    for i in range(3):
        sdnn.train_example(net, state, x[i], y[i], SMALL, rng)
    assert np.array_equal(net.W[0], W0) and np.array_equal(net.b[0], b0)
    assert not np.array_equal(net.W[1], W1)                     # the output layer did learn
    W1 = net.W[1].copy()
    info = sdnn.train_example(net, state, x[0], y[0], SMALL, rng, update=False)   # Fig 5B: no learning
    assert np.array_equal(net.W[1], W1) and info["L1"] > 0
    # rate mode too, symmetric feedback included (Y = W1^T is redrawn only after an update)
    cfg = replace(sdnn.RATE, hidden=(40,), symmetric_feedback=True)
    net = sdnn.init_weights(64, cfg, rng)
    before = [w.copy() for w in net.W + net.b + net.Y]
    sdnn.train_example(net, state, x[0], y[0], cfg, rng, update=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.W + net.b + net.Y))
    sdnn.train_example(net, state, x[0], y[0], cfg, rng)
    assert not any(np.array_equal(a, b) for a, b in zip(before, net.W + net.b + net.Y))


@pytest.mark.parametrize("teach_scale,slope,offset", [("unscaled", 0.6 / 1.7, 8 / 1.7), ("literal", 0.75, 1.0)])
def test_teaching_current_drives_target_to_E_E_and_others_to_E_I(teach_scale, slope, offset):
    """Eqs 19-20 at steady state with V1b = b1 (W1 = 0): target (g_d V1b + E_E)/(g_l + g_d + 1) and the
    others with E_I (the code's unscaled I); literal I/tau gives 0.75 V1b +- 1 (worked out from Eqs 19-20)."""
    cfg = replace(SMALL, teach_scale=teach_scale)
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(64, cfg, rng)
    net.W[1][:] = 0.0
    state = sdnn.init_state(net)
    out = sdnn.run_phase(net, state, np.zeros(64), 300, 7, cfg, rng)
    target = slope * net.b[1] + np.where(np.arange(10) == 7, offset, -offset)
    np.testing.assert_allclose(out["V"][1], target, atol=1e-3)
    assert np.argmax(out["V"][1]) == 7
    assert out["phi_out"][7] > 0.19 if teach_scale == "unscaled" else out["phi_out"][7] > 0.14


def test_symmetric_feedback_aligns_hidden_update_with_backprop():
    """With Y = W1^T the local error E0 points like backprop's (angle < 90 degrees, as Fig 7A's)."""
    X, y = datasets.load("digits")["train"]
    rng = np.random.default_rng(0)
    for cfg, n in ((replace(sdnn.RATE, hidden=(50,), symmetric_feedback=True), 200),
                   (replace(SMALL, hidden=(50,), symmetric_feedback=True), 30)):
        net = sdnn.init_weights(64, cfg, rng)
        state = sdnn.init_state(net)
        angles = [sdnn.train_example(net, state, X[i], y[i], cfg, rng)["angle"] for i in range(n)]
        assert np.nanmean(angles) < 80, (cfg.spiking, np.nanmean(angles))
    # random feedback in rate mode is not aligned at the start (sanity check of the measurement)
    cfg = replace(sdnn.RATE, hidden=(50,))
    net = sdnn.init_weights(64, cfg, rng)
    angle0 = [sdnn.rate_train_example(sdnn.init_weights(64, cfg, np.random.default_rng(i)), X[i], y[i], cfg)["angle"]
              for i in range(30)]
    assert 60 < np.mean(angle0) < 120


# ---- randomness ----

def test_input_thinning_gives_poisson_counts():
    """Kernel thinning of an input of pixel value p: its spike count over T steps, in repeated phases,
    has the Poisson mean phi_max p T and variance = mean (Methods "Training paradigm")."""
    cfg, T, reps = SMALL, 50, 400
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(64, cfg, rng)
    for p in (0.1, 0.5, 1.0):
        x = np.zeros(64)
        x[7] = p                                                # one active input: its own count
        counts = np.array([sdnn.run_phase(net, sdnn.init_state(net), x, T, None, cfg, rng)["n_spikes"][0]
                           for _ in range(reps)])
        mean = cfg.phi_max * p * T
        assert abs(counts.mean() - mean) < 5 * math.sqrt(mean / reps)
        assert abs(counts.var() / mean - 1.0) < 5 * math.sqrt(2 / reps)   # SE of a Poisson variance ratio


def test_output_spike_rate_matches_phi():
    """Kernel thinning: with W1 = 0 the output fires at phi_max sigma(k_d b1) (Eqs 17, 26)."""
    cfg = SMALL
    rng = np.random.default_rng(2)
    net = sdnn.init_weights(64, cfg, rng)
    net.W[1][:] = 0.0
    net.b[1][:] = np.linspace(-3, 3, 10)
    state = sdnn.init_state(net)
    T = 20000
    out = sdnn.run_phase(net, state, np.zeros(64), T, None, cfg, rng)
    expected = T * cfg.phi_max * sdnn.sigma(cfg.k_d * net.b[1]).sum()
    assert abs(out["n_spikes"][-1] - expected) < 4 * math.sqrt(expected)


def test_phase_lengths_match_code_and_paper():
    cfg, rng = sdnn.PAPER, np.random.default_rng(0)
    T = sdnn.phase_lengths(200000, cfg, rng)
    assert T.min() == 50 and abs(T.mean() - 51.52) < 0.03                  # mean of int(Wald(2, 1)): 1.52
    assert abs(np.mean(T >= 60) - 0.024) < 0.003                            # 2.4 % extended by >= 10 ms
    cont = sdnn.phase_lengths(200000, cfg, rng, discrete=False)
    assert abs(cont.mean() - 52.0) < 0.03                                   # Wald mean 2


def test_same_seed_same_result_and_predict_independent_of_threads():
    runs = [_run(SMALL, jit=True, seed=7) for _ in range(2)]
    for a, b in zip(runs[0][0].W, runs[1][0].W):
        assert np.array_equal(a, b)
    X = _inputs(np.random.default_rng(3), 12)[0]
    net = runs[0][0]
    cfg = replace(SMALL, test_ms=80)
    p1 = sdnn.predict(net, X, cfg, np.random.default_rng(4), n_jobs=1, chunk=5)
    p2 = sdnn.predict(net, X, cfg, np.random.default_rng(4), n_jobs=2, chunk=5)
    assert np.array_equal(p1, p2)


@pytest.mark.parametrize("cfg", [SMALL, SMALL_ORIG])
def test_test_phase_averages_after_the_settle_time(cfg):
    """Both the paper and the code (integration_time_test = 220 of 250 steps) average a test image's
    output potentials over [t_settle, test_ms), whatever the training window (the code's is 20 steps)."""
    net = _run(cfg, jit=True)[0]
    x = _inputs(np.random.default_rng(3), 1)[0][0]
    V = sdnn.test_example(net, x, cfg, np.random.default_rng(5))
    rec = sdnn.run_phase(net, sdnn.init_state(net), x, cfg.test_ms, None, cfg, np.random.default_rng(5),
                         record=True)["trace"][-1]            # same draws, recorded: (T, 4, n_out)
    np.testing.assert_allclose(V, rec[cfg.t_settle:, 2].mean(axis=0), rtol=1e-5, atol=1e-5)


# ---- initialisation and configuration ----

def test_init_statistics_match_the_original_codes():
    """The original code's init_weights (l.208-287) worked out by hand: W0 (fan-in 784) W_avg 0.0187, W_sd
    0.505, range [-1.73, 1.77], SD 1.01; W1 and Y (fan-in 500) W_avg 0.0293, W_sd 0.632, range [-2.16, 2.22];
    b in [0.7965, 0.8035]."""
    net = sdnn.init_weights(784, sdnn.PAPER, np.random.default_rng(0))
    W0, W1, Y = (w.astype(np.float64) for w in (net.W[0], net.W[1], net.Y[0]))
    assert abs(W0.mean() - 0.0187) < 0.005 and abs(W0.std() - 1.01) < 0.005
    assert -1.735 < W0.min() < -1.72 and 1.755 < W0.max() < 1.775
    for W in (W1, Y):
        assert abs((W.min() + W.max()) / 2 - 0.0293) < 0.005 and abs(W.std() - 2 * 0.632) < 0.02
        assert -2.165 < W.min() < -2.1 and 2.15 < W.max() < 2.225
    assert net.b[0].min() >= 0.7965 - 1e-6 and net.b[0].max() <= 0.8035 + 1e-6
    assert W0.shape == (500, 784) and W1.shape == (10, 500) and Y.shape == (500, 10)
    deep = sdnn.init_weights(784, sdnn.with_hidden(sdnn.PAPER, (500, 100)), np.random.default_rng(0))
    assert abs(deep.W[2].std() - 2 * 1.410) < 0.1 and abs(deep.Y[1].std() - 2 * 1.410) < 0.1   # fan-in 100
    assert abs(deep.Y[0].std() - 2 * 0.632) < 0.02                                               # fan-in 500


def test_march_2017_init_has_half_the_spread_and_zero_mean_product_feedback():
    """The code of March 2017 (f699bc4 l.210, 220) by hand: W = W_avg + 3.465 W_sd (U - 1/2) has SD W_sd
    (0.505 at fan-in 784, 0.632 at 500, 1.410 at 100); Y^(L-1) = R with SD W_sd of its layer above and
    mean 0; below it Y0 = R0 Y1, whose entries sum 100 products of independent zero-mean terms:
    SD = sqrt(100) * 0.632 * (SD of Y1 = 1.410) = 8.9."""
    net = sdnn.init_weights(784, sdnn.MARCH_2017, np.random.default_rng(0))
    W0, W1, Y = (w.astype(np.float64) for w in (net.W[0], net.W[1], net.Y[0]))
    assert abs(W0.std() - 0.505) < 0.005 and abs(W0.mean() - 0.0187) < 0.005
    assert abs(W1.std() - 0.632) < 0.02 and abs(Y.std() - 0.632) < 0.02
    assert abs(Y.mean()) < 0.03 and abs(Y.max() - 3.465 / 2 * 0.632) < 0.01      # zero mean, range +-1.095
    deep = sdnn.init_weights(784, sdnn.with_hidden(sdnn.MARCH_2017, (500, 100)), np.random.default_rng(0))
    assert abs(deep.Y[1].std() - 1.410) < 0.08 and abs(deep.Y[1].mean()) < 0.15
    assert abs(deep.Y[0].std() - 10 * 0.632 * 1.410) < 0.6 and abs(deep.Y[0].mean()) < 0.5
    assert np.linalg.matrix_rank(deep.Y[0].astype(np.float64)) == 10               # a product, still rank 10


def test_backprop_twin_moves_hidden_weights_along_backprops_error():
    """Config.backprop (the code's use_backprop): the hidden update is -eta0 P0 E_bp s^T with
    E_bp = (W1_new^T E1) * k_b phi_max sigma'(V0) (l.1554-1556). The factor k_b phi_max sigma' is
    positive, so every hidden unit's update has the sign of -(W1_new^T E1), with E1 read off the output
    update (-eta1 P1 E1 s1^T, s1 >= 0). The plateau rule's update has no such sign pattern."""
    X, y = datasets.load("digits")["train"]
    agree = {}
    for backprop in (True, False):
        cfg = replace(SMALL, hidden=(50,), backprop=backprop)
        rng = np.random.default_rng(3)
        net = sdnn.init_weights(64, cfg, rng)
        state = sdnn.init_state(net)
        for i in range(5):                                     # a few examples, so that the state is not fresh
            sdnn.train_example(net, state, X[i], y[i], cfg, rng)
        W0, W1 = net.W[0].copy(), net.W[1].copy()
        sdnn.train_example(net, state, X[5], y[5], cfg, rng)
        d0, d1 = net.W[0] - W0, net.W[1] - W1
        u = d0[:, np.argmax(np.abs(d0).sum(axis=0))]           # the column factor of the rank-1 update
        e1 = -d1[:, np.argmax(np.abs(d1).sum(axis=0))]         # proportional to E1
        bp = -(net.W[1].T @ e1)
        big = np.abs(u) > 1e-3 * np.abs(u).max()
        agree[backprop] = np.mean(np.sign(u[big]) == np.sign(bp[big]))
    assert agree[True] == 1.0 and agree[False] < 0.9, agree


def test_sparse_feedback_zeroes_fraction_and_amplifies():
    base = sdnn.init_weights(784, sdnn.PAPER, np.random.default_rng(0))
    sp = sdnn.init_weights(784, replace(sdnn.PAPER, sparse_feedback=0.8), np.random.default_rng(0))
    assert np.mean(sp.Y[0] == 0) == pytest.approx(0.8, abs=1e-3)
    kept = sp.Y[0] != 0
    np.testing.assert_allclose(sp.Y[0][kept], 5 * base.Y[0][kept], rtol=1e-6)


def test_config_derived_constants_and_presets():
    c = sdnn.PAPER
    assert c.k_b == pytest.approx(0.857, abs=1e-3) and c.k_d == pytest.approx(0.857, abs=1e-3)
    assert replace(c, g_a=0.05).k_b == pytest.approx(0.800, abs=1e-3)
    assert replace(c, g_a=0.6).k_b == pytest.approx(0.462, abs=1e-3)
    assert c.P0 == pytest.approx(100) and c.P1 == pytest.approx(500)
    assert set(sdnn.PRESETS) == {"paper", "rate", "original_code", "march_2017"}
    assert sdnn.ORIGINAL_CODE.psp == "truncated10" and sdnn.ORIGINAL_CODE.test_ms == 250
    assert sdnn.with_hidden(c, (500, 100)).etas == (0.23, 0.23, 0.12)


@pytest.mark.parametrize("change,field", [
    ({"g_b": -0.6}, "g_b"), ({"g_a": -0.1}, "g_a"), ({"phase_min": 20}, "phase_min"),
    ({"test_ms": 30}, "test_ms"), ({"etas": (0.2,)}, "etas"), ({"psp": "gauss"}, "psp"),
    ({"window": "last30"}, "window"), ({"sparse_feedback": 1.0}, "sparse_feedback"),
    ({"hidden": (500, 0), "etas": (1, 1, 1)}, "hidden"), ({"tau_s": 10.0}, "tau_s"),
])
def test_config_validation_names_the_field(change, field):
    with pytest.raises(ValueError, match=f"Config.{field}"):
        replace(sdnn.PAPER, **change)


def test_with_hidden_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="PAPER_ETAS|etas"):
        sdnn.with_hidden(sdnn.PAPER, (300,))


# ---- learning smoke tests ----

def test_rate_mode_learns_digits():
    d = datasets.load("digits")
    (X, y), (Xt, yt) = d["train"], d["test"]
    cfg = replace(sdnn.RATE, hidden=(100,))
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(64, cfg, rng)
    err0 = sdnn.test_error(net, Xt, yt, cfg, rng)
    order = np.arange(5 * len(X)) % len(X)
    sdnn.train_epoch(net, sdnn.init_state(net), X[order], y[order], cfg, rng)
    err1 = sdnn.test_error(net, Xt, yt, cfg, rng)
    assert err0 > 70 and err1 < 40, (err0, err1)


def test_spiking_network_learns_mnist():
    """PAPER preset, 4,000 online examples: the original code was at 20-40 % test error by then."""
    d = datasets.load("mnist", data_dir_or_skip("mnist"))
    (X, y), (Xt, yt) = d["train"], d["test"]
    cfg = replace(sdnn.PAPER, test_ms=200)
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(784, cfg, rng)
    err0 = sdnn.test_error(net, Xt[:300], yt[:300], cfg, rng)
    r = sdnn.train_epoch(net, sdnn.init_state(net), X[:4000], y[:4000], cfg, rng)
    err1 = sdnn.test_error(net, Xt[:300], yt[:300], cfg, rng)
    assert err0 > 80 and err1 < 60, (err0, err1)
    assert np.nanmean(r["angle"][-500:]) < 85            # local update drifts towards backprop's (Fig 7A)


def test_rate_preset_follows_original_code_curve():
    """RATE preset, 60,000 examples: the original code's rate mode reached 6.32 % (seed 0); three seeds
    of this code gave 6.0-7.0 % (reference/sdnn_fidelity.json)."""
    d = datasets.load("mnist", data_dir_or_skip("mnist"), n_valid=0)
    (X, y), (Xt, yt) = d["train"], d["test"]
    rng = np.random.default_rng(0)
    net = sdnn.init_weights(784, sdnn.RATE, rng)
    order = rng.permutation(len(X))
    sdnn.train_epoch(net, None, X[order], y[order], sdnn.RATE, rng)
    assert sdnn.test_error(net, Xt, yt, sdnn.RATE, rng) < 8.5


@pytest.mark.slow
def test_original_code_preset_learns_like_the_original():
    """ORIGINAL_CODE spiking, 6,000 examples: the original reached 20.0 % (seed 0) on 1,000 test images;
    three seeds of this code gave 31-34 % (a slower start; see the README)."""
    d = datasets.load("mnist", data_dir_or_skip("mnist"), n_valid=0)
    (X, y), (Xt, yt) = d["train"], d["test"]
    rng = np.random.default_rng(0)
    cfg = sdnn.ORIGINAL_CODE
    net = sdnn.init_weights(784, cfg, rng)
    order = rng.permutation(len(X))[:6000]
    sdnn.train_epoch(net, sdnn.init_state(net), X[order], y[order], cfg, rng)
    idx = rng.choice(len(Xt), 1000, replace=False)
    assert sdnn.test_error(net, Xt[idx], yt[idx], cfg, rng) < 45
