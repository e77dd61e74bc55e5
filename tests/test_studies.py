"""The comparison studies (studies.py): FLOPs counted from the code against a hand count, the plausibility
marks of every rule, the angle and CKA measures against known cases, and the datasets protocol."""
import math

import numpy as np
import pytest

import baselines as bl
import experiments
import sdnn
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
