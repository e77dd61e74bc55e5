"""Backprop skeleton: gradients against central finite differences, optimizers against hand-written steps."""
import numpy as np
import pytest

import baselines as bl

CASES = [(a, loss, out) for a in bl.ACTIVATIONS for loss, outs in bl.OUTPUTS.items() for out in outs]


def numeric_grads(params, x, t, cfg, h=1e-6):
    """Central differences of the batch-mean loss with respect to every weight and bias."""
    def L():
        return bl.loss(cfg, bl.forward(params, x, cfg)["h"][-1], t)
    out = {}
    for k in ("W", "b"):
        out[k] = []
        for p in params[k]:
            g = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + h
                up = L()
                p[i] = old - h
                down = L()
                p[i] = old
                g[i] = (up - down) / (2 * h)
            out[k].append(g)
    return out


@pytest.mark.parametrize("activation,loss,output", CASES)
def test_backprop_matches_finite_differences(activation, loss, output):
    rng = np.random.default_rng(0)
    cfg = bl.Config(sizes=(6, 5, 4, 3), activation=activation, loss=loss, output=output, dtype="float64")
    params, _ = bl.make("bp", cfg, rng)
    for b in params["b"]:                       # nonzero biases so that every gradient path is exercised
        b[:] = rng.normal(0, 0.5, b.shape)
    x = rng.normal(size=(7, 6))
    t = bl.one_hot(rng.integers(0, 3, 7), 3, np.float64)
    cache = bl.forward(params, x, cfg)
    grads = bl.gradients(cache, bl.bp_hidden_errors(params, cache, bl.output_error(cache, t, cfg), cfg))
    fd = numeric_grads(params, x, t, cfg)
    for k in ("W", "b"):
        for l, (g, g_fd) in enumerate(zip(grads[k], fd[k])):
            rel = np.linalg.norm(g - g_fd) / (np.linalg.norm(g) + np.linalg.norm(g_fd))
            assert rel < 1e-6, f"{k}[{l}] relative error {rel:.2e}"


def one_param_step(optimizer, g_seq, **kw):
    """Run the optimizer on a single scalar-valued parameter with the given gradient sequence."""
    cfg = bl.Config(sizes=(1, 1), optimizer=optimizer, dtype="float64", **kw)
    params = {"W": [np.zeros((1, 1))], "b": [np.zeros(1)]}
    opt = bl.init_optimizer(params)
    for g in g_seq:
        bl.update(params, {"W": [np.full((1, 1), g)], "b": [np.zeros(1)]}, opt, cfg)
    return params["W"][0][0, 0]


def test_optimizers_match_hand_computed_steps():
    g1, g2, lr = 0.5, -2.0, 0.1
    assert one_param_step("sgd", [g1, g2], lr=lr) == pytest.approx(-lr * (g1 + g2))
    # momentum: m1 = -lr g1; m2 = mu m1 - lr g2; p = m1 + m2
    m1 = -lr * g1
    assert one_param_step("momentum", [g1, g2], lr=lr, momentum=0.9) == pytest.approx(m1 + 0.9 * m1 - lr * g2)
    # rmsprop: v1 = (1 - rho) g1^2
    v1 = 0.1 * g1 ** 2
    assert one_param_step("rmsprop", [g1], lr=lr, beta2=0.9) == pytest.approx(-lr * g1 / (np.sqrt(v1) + 1e-8))
    # adam: bias correction makes the first step lr * sign(g); second step from the corrected moments
    assert one_param_step("adam", [g1], lr=lr) == pytest.approx(-lr, rel=1e-6)
    m = 0.1 * (0.9 * g1 + g2) / (1 - 0.9 ** 2)
    v = 0.001 * (0.999 * g1 ** 2 + g2 ** 2) / (1 - 0.999 ** 2)
    assert one_param_step("adam", [g1, g2], lr=lr) == pytest.approx(-lr - lr * m / (np.sqrt(v) + 1e-8))
    # t_half: step t uses lr / (1 + (t - 1) / t_half): lr, then lr / 1.5 at t_half = 2
    assert one_param_step("sgd", [g1, g2, g1], lr=lr, t_half=2) == pytest.approx(-lr * (g1 + g2 / 1.5 + g1 / 2))


@pytest.mark.parametrize("field,value,words", [
    ("lr", 0.0, "learning rate must be positive"),
    ("lr", -1e-3, "learning rate must be positive"),
    ("sizes", (784, 0, 10), "positive integer"),
    ("sizes", (784, -5, 10), "positive integer"),
    ("batch", 0, "minibatch size"),
    ("t_half", -1, "learning rate constant"),
    ("activation", "gelu", "choose one of"),
    ("optimizer", "lbfgs", "choose one of"),
    ("output", "linear", "does not go with loss"),
])
def test_bad_config_names_the_field(field, value, words):
    with pytest.raises(ValueError, match=words) as err:
        bl.Config(**{field: value})
    assert field in str(err.value)


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of.*bp"):
        bl.make("backprop2", bl.Config(), np.random.default_rng(0))


def test_same_seed_same_weights_and_training():
    cfg = bl.Config(sizes=(20, 8, 3))
    x = np.random.default_rng(1).random((50, 20), dtype=np.float32)
    t = bl.one_hot(np.arange(50) % 3, 3)
    runs = []
    for _ in range(2):
        params, opt = bl.make("bp", cfg, np.random.default_rng(7))
        losses = [bl.step("bp", params, opt, x, t, cfg) for _ in range(5)]
        runs.append((losses, params["W"][0].copy()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < runs[0][0][0]
