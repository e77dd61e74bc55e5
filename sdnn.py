"""sdnn.py -- segregated-dendrite network of Guerguiev, Lillicrap & Richards (2017).

Paper: "Towards deep learning with segregated dendrites", eLife 6:e22901, doi:10.7554/eLife.22901
(version of record v1). "Eq. n" tags use its numbering. Original code: jordan-g/Segregated-Dendrite-
Deep-Learning at a41ebc8 ("the code"); where we depart from it or from the paper, a comment says so.
Not included: learned feedback weights; the burst mechanism of Eqs. 36-37 (discussion only).

Conventions. Time in ms, one step dt = 1 ms. Rates in spikes per step (phi_max = 0.2 = 200 Hz), which
is what gives P0 = 100 and P1 = 500 their published meaning. Weights keep the paper's orientation,
W[k] of shape (n_k, n_{k-1}), stored column-major so that W[k].T is a C-contiguous (n_{k-1}, n_k)
array whose row j is the column of W[k] that a spike of unit j adds (event-driven input). One example
at a time (online learning, batch size 1), as in the paper; unlike the code, vectors are 1-D, not (n, 1).

Layers: k = 0 .. L-1 are hidden layers (basal, apical, soma), k = L is the output layer (dendrite,
soma). "Population" p = 0 is the input, p = k + 1 is hidden layer k; population k feeds layer k.

Example: python experiments.py --fig 3
"""
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numba
import numpy as np
from numba import njit
from scipy.special import expit

DT = 1.0  # ms, time step; Methods "Simulation details". All rates are per step, so dt is fixed.

# Paper's learning rates per architecture, in layer order (first hidden, ..., output); the code l.1563, 1808,
# Methods "Learning rate optimization".
PAPER_ETAS = {(): (0.19,), (500,): (0.21, 0.21), (500, 100): (0.23, 0.23, 0.12)}


# ---------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """All parameters of the model. Defaults = the paper (Table 1 and Methods). See PRESETS."""
    # architecture
    hidden: tuple = (500,)            # hidden-layer sizes; () = 784-10, (500, 100) = 784-500-100-10; Fig 6A
    n_out: int = 10                   # output units, one per digit
    # neurons and synapses
    phi_max: float = 0.2              # spikes / step (200 Hz), maximum rate; Table 1
    tau_L: float = 10.0               # ms, long synaptic time constant of kappa; Table 1
    tau_s: float = 3.0                # ms, short synaptic time constant of kappa; Table 1
    g_b: float = 0.6                  # basal -> soma conductance; Table 1
    g_a: float = 0.0                  # apical -> soma conductance; Table 1 (0, 0.05 or 0.6: Fig 9)
    g_d: float = 0.6                  # output dendrite -> soma conductance; Table 1
    g_l: float = 0.1                  # leak conductance (= 1/tau_L in the code); Table 1
    E_E: float = 8.0                  # excitatory reversal potential of the teaching current; Table 1
    E_I: float = -8.0                 # inhibitory reversal potential; Table 1
    teach_scale: str = "unscaled"     # "unscaled": C_m dV/dt = ... + I (the code, l.1830-1869); "literal": I/tau
    psp: str = "exact"                # "exact": untruncated kappa (Eq. (12)); "truncated10": the code's 10 steps
    spiking: bool = True              # False = the code's rate ("non-spiking") mode; not the paper's model
    spiking_feedback: bool = True     # False = apical input Y phi (rates) instead of Y s; Fig 7A red
    # phases (steps = ms)
    t_settle: int = 30                # settle time Delta t_s before averaging; Table 1, Eq. (22)
    phase_min: int = 50               # minimum phase length; Methods "Simulation details"
    random_phase_lengths: bool = True # add a Wald(mean, scale) extra length; Methods, Fig 4B
    wald_mean: float = 2.0            # ms; Methods
    wald_scale: float = 1.0           # ms; Methods
    phase_round: str = "floor"        # "floor" = the code's int(); "round" = nearest step
    window: str = "after_settle"      # "after_settle" = [start + 30, end] (Eqs. (21)-(22)); "last20" = the code
    test_ms: int = 500                # test phase length; Methods (the code: 250)
    reset_each_example: bool = False  # the code carries the state over between training examples
    # feedback variants (Fig 6-S1, 8, 8-S1)
    sparse_feedback: float = 0.0      # fraction of Y entries set to zero; Fig 8B uses 0.8
    sparse_gain: float = 5.0          # factor on surviving Y entries; Fig 8B: 5, Fig 8-S1 blue: 1
    symmetric_feedback: bool = False  # Y = W^T, recomputed after every update; Fig 8D
    symmetric_noise_sd: float = 0.0   # SD of N(0, sd) added to W^T, resampled each example; Fig 8D: 0.05
    stochastic_plateau: bool = False  # per-unit plateau times; Fig 6-S1
    backprop: bool = False            # hidden layers learn from backprop's error instead of their plateaus:
                                      # the twin of Fig 7B, C (the code's use_backprop, l.1554-1556)
    plateau_sd: float = math.sqrt(3)  # folded-normal spread of plateau offsets (paper sigma^2 = 3; code SD 3)
    plateau_max: int = 5              # steps, largest plateau offset before the phase end; Methods
    # learning
    etas: tuple = (0.21, 0.21)        # learning rates (first hidden, ..., output); Methods
    # initialisation (the code's init_weights with use_weight_optimization, l.208-287)
    V_avg: float = 3.0                # target mean dendritic voltage
    V_sd: float = 3.0                 # target SD of dendritic voltage (3 +- 3*3 spans -6..12; Methods)
    b_avg: float = 0.8                # bias mean
    b_sd: float = 0.001               # bias SD
    init_spread: float = 3.465        # the code's constant, ~2*sqrt(3): actual SD of W is 2*W_sd (l.257)
    feedback_init: str = "head"       # "head": Y = W_avg + spread W_sd U(-1, 1) (l.257); "product": zero-mean
                                      # R, Y^(k-1) = R Y^(k) with Y^(L) = I, as the code of March 2017

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"Config.{name}={getattr(self, name)!r}: {why}")
        for name in ("g_b", "g_d", "g_l", "phi_max", "tau_L", "tau_s", "wald_mean", "wald_scale"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        for name in ("g_a", "b_sd", "symmetric_noise_sd", "plateau_sd", "V_sd"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0 (a conductance or a spread cannot be negative)")
        if self.tau_L == self.tau_s:
            bad("tau_s", "must differ from tau_L (kappa divides by tau_L - tau_s)")
        if any(int(n) != n or n < 1 for n in self.hidden):
            bad("hidden", "must be a tuple of positive layer sizes, e.g. (500,) or () for no hidden layer")
        if self.n_out < 2:
            bad("n_out", "need at least 2 output units")
        if len(self.etas) != len(self.hidden) + 1:
            bad("etas", f"needs {len(self.hidden) + 1} learning rates for hidden={self.hidden} "
                        f"(use with_hidden(cfg, hidden), which takes PAPER_ETAS)")
        if any(e < 0 for e in self.etas):
            bad("etas", "learning rates must be >= 0")
        for name, allowed in (("psp", ("exact", "truncated10")), ("window", ("after_settle", "last20")),
                              ("teach_scale", ("unscaled", "literal")), ("phase_round", ("floor", "round")),
                              ("feedback_init", ("head", "product"))):
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {allowed}")
        if not 0 <= self.sparse_feedback < 1:
            bad("sparse_feedback", "fraction of zeroed feedback weights must be in [0, 1)")
        if self.t_settle < 0:
            bad("t_settle", "must be >= 0")
        if self.phase_min <= self.t_settle or self.phase_min < 20:
            bad("phase_min", f"phase must be longer than the settle time t_settle={self.t_settle} and >= 20")
        if self.test_ms <= self.t_settle:
            bad("test_ms", f"test phase must be longer than the settle time t_settle={self.t_settle}")
        if self.psp == "truncated10" and self.window == "after_settle" and self.t_settle < 10:
            bad("t_settle", "truncated10 needs an averaging window starting >= 10 steps into the phase")
        if self.backprop and not self.spiking:
            bad("backprop", "the backprop twin is a spiking network (Fig 7); the rate mode has no such option")
        if self.plateau_max < 0 or self.plateau_max > self.phase_min - 30:
            bad("plateau_max", "must be in [0, phase_min - 30]")

    # derived constants, each computed here only
    @property
    def k_b(self):  # Eq. (34): basal attenuation of the soma's steady state
        return self.g_b / (self.g_l + self.g_b + self.g_a)

    @property
    def k_d(self):  # Eq. (27): output dendrite attenuation
        return self.g_d / (self.g_l + self.g_d)

    @property
    def P0(self):   # Eq. (35), Table 1: hidden error scaling 20 / phi_max (= 100 per step)
        return 20.0 / self.phi_max

    @property
    def P1(self):   # Eq. (29), Table 1: output error scaling 20 / phi_max^2 (= 500 per step)
        return 20.0 / self.phi_max ** 2

    @property
    def d_L(self):  # per-step decay of the long trace, exp(-dt / tau_L), so kappa needs two traces
        return math.exp(-DT / self.tau_L)

    @property
    def d_s(self):  # per-step decay of the short trace, exp(-dt / tau_s)
        return math.exp(-DT / self.tau_s)


def with_hidden(cfg, hidden):
    """cfg with other hidden layers and the paper's learning rates for that network (PAPER_ETAS)."""
    hidden = tuple(hidden)
    if hidden not in PAPER_ETAS:
        raise ValueError(f"no paper learning rates for hidden={hidden}; use replace(cfg, hidden=..., etas=...)")
    return replace(cfg, hidden=hidden, etas=PAPER_ETAS[hidden])


PAPER = Config()
# The code's default at HEAD (rate mode): no spikes, no conductance dynamics, somata at steady state.
# Not the paper's model (the code's nonspiking_mode, l.53, 99-117).
RATE = replace(PAPER, spiking=False, spiking_feedback=False, random_phase_lengths=False)
# The code's choices where they differ from the paper: 10-step kernel (l.90, 162-168), last-20-step
# averages, 250-ms test phase, plateau spread SD 3 (#1, #2, #3, #5).
ORIGINAL_CODE = replace(PAPER, psp="truncated10", window="last20", test_ms=250, plateau_sd=3.0)
# The code of 15-17 March 2017 (76f83e5 ... f699bc4), the likeliest version behind the figures: ORIGINAL_CODE's
# kernel, window and test phase, with W = W_avg + 3.465 W_sd (U - 1/2) (half HEAD's spread: SD = W_sd) and
# zero-mean feedback Y^(k-1) = R Y^(k), a product of random matrices below the top hidden layer
# (f699bc4 deep_learning.py l.210, 220). That file's default also drew per-unit plateau times
# (use_rand_burst_times = True, l.38); the paper's Methods and this preset keep them synchronous.
MARCH_2017 = replace(ORIGINAL_CODE, init_spread=3.465 / 2, feedback_init="product")
PRESETS = {"paper": PAPER, "rate": RATE, "original_code": ORIGINAL_CODE, "march_2017": MARCH_2017}

# Plausibility marks of this rule, in the form of baselines.PLAUSIBILITY (the properties are defined in
# baselines.PROPERTIES); `python experiments.py --study complexity` builds the table from them.
PLAUSIBILITY = {
    "exact_gradients": ("no", "updates follow alpha^t - alpha^f via random Y (Eq 33): 65-70 deg off BP (Fig 7A)"),
    "no_weight_transport": ("yes", "Y is fixed and random, a form of feedback alignment (Eq 13)"),
    "no_separate_pathways": ("yes", "feedback reaches the apical dendrites of the learning neurons themselves (Eq 13)"),
    "dendritic_integration": ("yes", "segregated apical dendrites: with g_a = 0 they drive only the plateaus (Eq 21)"),
    "separate_weights_learned": ("no", "Y stays fixed (learned feedback is left out, see the docstring)"),
    "linear_stabilisation": ("partly", "Theorem 1 needs the feedback Jacobians' product near I, to first order"),
    "explicit_error_representation": ("no", "the error is a difference of two phases' plateaus; no unit signals it"),
    "backward_steps": ("1", "output spikes reach each hidden layer's apical dendrite at once via its Y (Eqs 38-41)"),
}


def sigma(x):
    """Logistic function (Eq 17), in the precision of x; no overflow for very negative x."""
    return expit(x)


def dsigma(x):
    """Derivative of the logistic function."""
    s = sigma(x)
    return s * (1.0 - s)


def kappa(t, cfg):
    """PSP kernel of Eq 12 at times t (ms); 0 for t <= 0."""
    t = np.asarray(t, dtype=np.float64)
    k = (np.exp(-t / cfg.tau_L) - np.exp(-t / cfg.tau_s)) / (cfg.tau_L - cfg.tau_s)  # Eq. (12)
    return np.where(t > 0, k, 0.0)


def psp_traces(n, cfg, lag=False):
    """Filtered spike train s_t of spike counts n (T, units) by the two-trace recursion (kappa is a
    difference of two exponentials, so two decaying sums of the spikes give it exactly).

    lag=False: paper convention, s_t = sum_{u<=t} kappa(t-u) n_u (a spike acts from the next step).
    lag=True: the code's convention, s_t = sum_{u<=t} kappa(t-u+1) n_u (the newest spike weighs kappa(1)).
    """
    x_L = np.zeros(n.shape[1:])
    x_s = np.zeros(n.shape[1:])
    s = np.zeros(n.shape)
    for t in range(n.shape[0]):
        if lag:
            x_L = cfg.d_L * (x_L + n[t])
            x_s = cfg.d_s * (x_s + n[t])
        else:
            x_L = cfg.d_L * x_L + n[t]                              # long trace
            x_s = cfg.d_s * x_s + n[t]                              # short trace
        s[t] = (x_L - x_s) / (cfg.tau_L - cfg.tau_s)                # Eqs. (11)-(12)
    return s


def phase_lengths(n, cfg, rng, discrete=True):
    """n phase lengths in steps: phase_min + Wald(wald_mean, wald_scale) (Methods; Fig 4B)."""
    if not cfg.random_phase_lengths:
        return np.full(n, cfg.phase_min, dtype=np.int64)
    extra = rng.wald(cfg.wald_mean, cfg.wald_scale, size=n)
    if not discrete:
        return cfg.phase_min + extra
    extra = np.floor(extra) if cfg.phase_round == "floor" else np.rint(extra)   # the code: int()
    return cfg.phase_min + extra.astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# Network, state and initialisation
# ---------------------------------------------------------------------------------------------------

@dataclass
class Network:
    """Weights. W[k]: (n_k, n_{k-1}), b[k]: (n_k,), Y[k]: (n_k, n_out) for hidden layer k.

    float32: the updates (~1e-3 of |W|) are far above float32 resolution (6e-8 relative), and the
    spiking noise is far above the rounding noise; halving the memory traffic doubles the speed.
    """
    W: list
    b: list
    Y: list
    Y_mask: list = field(default_factory=list)   # sparse feedback: True where Y is kept


def init_weights(n_in, cfg, rng, gain=1.0):
    """The code's init_weights (use_weight_optimization=True), exactly (l.208-287; cfg.feedback_init="product":
    its March 2017 form, f699bc4 l.172-231). Returns a Network.
    gain multiplies W and Y after the formula: a choice of the training run, not of the paper (1)."""
    sizes = (n_in,) + tuple(cfg.hidden) + (cfg.n_out,)
    L = len(cfg.hidden)
    nu = cfg.phi_max * 0.25                      # slope of the linear region of phi_max * sigma
    V_sm = cfg.V_sd ** 2 + cfg.V_avg ** 2        # second moment of the dendritic voltage
    W, b, Y = [None] * (L + 1), [None] * (L + 1), [None] * L
    for k in range(L, -1, -1):                   # top down, as the code (same draw order)
        N = sizes[k]                             # fan-in
        W_avg = (cfg.V_avg - cfg.b_avg) / (nu * N * cfg.V_avg)
        W_sm = (V_sm + nu ** 2 * (N - N ** 2) * W_avg ** 2 * cfg.V_avg ** 2
                - 2 * N * nu * cfg.b_avg * cfg.V_avg * W_avg - cfg.b_avg ** 2) / (N * nu ** 2 * V_sm)
        W_sd = math.sqrt(W_sm - W_avg ** 2)
        W[k] = W_avg + cfg.init_spread * W_sd * rng.uniform(-1, 1, size=(sizes[k + 1], N))
        b[k] = cfg.b_avg + cfg.init_spread * cfg.b_sd * rng.uniform(-1, 1, size=sizes[k + 1])
        if k > 0 and cfg.feedback_init == "head":   # Y for hidden layer k-1, with the fan-in N of the layer
            Y[k - 1] = W_avg + cfg.init_spread * W_sd * rng.uniform(-1, 1, size=(N, cfg.n_out))  # above (l.257)
        elif k > 0:                                   # March 2017: Y^(k-1) = R Y^(k), Y^(L) = I (f699bc4 l.220)
            above = np.eye(cfg.n_out) if k == L else Y[k]
            Y[k - 1] = cfg.init_spread * W_sd * rng.uniform(-1, 1, size=(N, sizes[k + 1])) @ above
    net = Network([np.asfortranarray(gain * w, np.float32) for w in W], [v.astype(np.float32) for v in b],
                  [np.asfortranarray(gain * y, np.float32) for y in Y])
    if cfg.sparse_feedback > 0:   # Fig 8: zero a fraction of Y (without replacement), scale the rest
        for k in range(L):
            drop = rng.choice(net.Y[k].size, int(cfg.sparse_feedback * net.Y[k].size), replace=False)
            mask = np.ones(net.Y[k].size, dtype=bool)
            mask[drop] = False
            net.Y_mask.append(mask.reshape(net.Y[k].shape, order="F"))
            net.Y[k] *= net.Y_mask[k] * np.float32(cfg.sparse_gain)
    if cfg.symmetric_feedback:
        make_symmetric(net, cfg, rng)
    return net


def make_symmetric(net, cfg, rng):
    """Y^(L-1) = W_L^T (+ noise), Y^k = (W_(k+1)^T + noise) Y^(k+1) under broadcast (code l.306-343)."""
    L = len(net.W) - 1
    for k in range(L - 1, -1, -1):
        W_above = net.W[k + 1].T.astype(np.float64)
        if cfg.symmetric_noise_sd > 0:
            W_above = W_above + rng.normal(0.0, cfg.symmetric_noise_sd, size=W_above.shape)
        Y = W_above if k == L - 1 else W_above @ net.Y[k + 1]
        if net.Y_mask:   # the code re-applies the sparse mask and gain (l.660-666)
            Y = Y * net.Y_mask[k] * cfg.sparse_gain
        net.Y[k] = np.asfortranarray(Y, np.float32)


@dataclass
class State:
    """Dynamic state carried between phases (and, as in the code, between training examples).

    Per layer k (hidden layers 0..L-1, output layer L), tuples of float32 (n_k,) arrays:
      u_L, u_s : basal postsynaptic traces W x_L and W x_s, so that V_b = W s + b = (u_L - u_s) /
                 (tau_L - tau_s) + b (Eqs 11-13; the event-driven form of W s)
      a_L, a_s : the same for the apical input, Y times the output-spike traces (hidden layers; the
                 output layer's stay 0)
      V        : somatic potential, V0 of Eq 14 (hidden) or V1 of Eq 19 (output)
      ring_b, ring_a : (10, n_k) basal and apical increments W n and Y n_out of the last 10 steps
                 (psp="truncated10": the code's 10-step kernel, l.90)
    Per population p (input p = 0, hidden layer k as p = k + 1), float64 (n_p,):
      x_L, x_s : presynaptic spike traces at the end of the last phase, x <- d x + n (Eq 11)
    Output layer, float64 (n_out,) unless stated:
      out_L, out_s : output-spike traces decayed to the next step, x <- d (x + n), so that Y out_L and
                 Y out_s are the next step's a_L, a_s
      n_out_hist : (10, n_out) output spike counts of the last 10 steps (ring, as ring_a)
      phi_out  : float32, output rates of the last step (rate feedback, Fig 7A)
      pos      : ring slot of the next step
    """
    u_L: tuple
    u_s: tuple
    a_L: tuple
    a_s: tuple
    V: tuple
    ring_b: tuple
    ring_a: tuple
    x_L: tuple
    x_s: tuple
    out_L: np.ndarray
    out_s: np.ndarray
    n_out_hist: np.ndarray
    phi_out: np.ndarray
    pos: int = 0


def init_state(net):
    """All-zero state for `net` (the code's clear_vars, l.1337-1341)."""
    n = [w.shape[0] for w in net.W]
    # one block per layer (population), its rows handed out by name: few allocations, adjacent rows
    u_L, u_s, a_L, a_s, V = zip(*(np.zeros((5, m), np.float32) for m in n))
    ring_b, ring_a = zip(*(np.zeros((2, 10, m), np.float32) for m in n))
    x_L, x_s = zip(*(np.zeros((2, w.shape[1])) for w in net.W))
    out_L, out_s = np.zeros((2, n[-1]))
    return State(u_L, u_s, a_L, a_s, V, ring_b, ring_a, x_L, x_s, out_L, out_s, np.zeros((10, n[-1])),
                 np.zeros(n[-1], np.float32))


# ---------------------------------------------------------------------------------------------------
# Randomness, from the caller's Generator and passed to the step loop, which stays deterministic: the
# candidate counts drawn in NumPy, and a seed for the candidates' uniforms; and the per-phase tables of
# the step loop
# ---------------------------------------------------------------------------------------------------

# SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators", OOPSLA): the
# e-th number of the stream `seed` mixes seed + (e + 1) gamma, so the kernel computes a candidate's
# uniform where it needs it, in ~1 ns (NumPy's Generator.random: ~5 ns a number, most of a phase's draws).
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def candidate_uniforms(seed, lo, hi):
    """The uniforms in [0, 1) of candidates lo..hi-1 of the stream `seed` (twin of the kernel's _uniform)."""
    z = np.uint64(seed) + (np.arange(lo, hi, dtype=np.uint64) + np.uint64(1)) * _GAMMA   # modulo 2^64
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53                        # top 53 bits


def draw_candidates(sizes, T, cfg, rng):
    """Candidate spikes at the maximum rate phi_max for populations of `sizes` units over T steps.

    Thinning (exact): a candidate of unit i at step t is kept with probability p_i(t) (x_i for an
    input, sigma(V_i(t)) for a neuron; the step loop decides), so the kept counts per step are
    Poisson(phi_max p_i(t)): Poisson inputs of rate phi_max x (Methods "Training paradigm") and Poisson
    spikes of rate phi = phi_max sigma(V) (Eq 17). Counts > 1 per step are possible, as in the code.
    All units of a population share one Poisson count per step (Poisson splitting) and one uniform
    u per candidate carries both the unit, int(u n), and the acceptance uniform, u n - int(u n)
    (independent of the unit, resolution 2^-53 n).
    Returns the candidate counts (n_pop, T) (numbered by candidate_ptr) and the seed of their uniforms,
    candidate_uniforms(seed, e, e + 1). A training example draws both its phases at once (T = T_f + T_t,
    split by example_candidates).
    """
    counts = np.empty((len(sizes), T), np.int64)
    for p, n in enumerate(sizes):   # the draws of one broadcast call over (population, step), at half its cost
        counts[p] = rng.poisson(cfg.phi_max * n, size=T)
    return counts, np.uint64(rng.bit_generator.random_raw())   # one 64-bit draw seeds the uniforms


# The target phase's candidates are numbers 2^32, 2^32 + 1, ... of the example's stream: its seed is the
# forward phase's + 2^32 gamma (mod 2^64), so the two phases never share a uniform.
_SECOND_PHASE = (1 << 32) * int(_GAMMA) % (1 << 64)


def example_candidates(counts, seed, T_f):
    """The (counts, seed) of the forward and of the target phase of one example drawn at once."""
    return (counts[:, :T_f], seed), (counts[:, T_f:], _second_seed(seed))


def _second_seed(seed):
    return np.uint64((int(seed) + _SECOND_PHASE) % (1 << 64))


def candidate_ptr(counts):
    """ptr (n_pop, T + 1): the candidates of population p at step t are e = ptr[p, t] .. ptr[p, t+1] - 1,
    population after population (twin of the kernel's _candidate_ptr)."""
    ptr = np.zeros((counts.shape[0], counts.shape[1] + 1), np.int64)
    ptr[:, 1:] = np.cumsum(counts).reshape(counts.shape)
    ptr[1:, 0] = ptr[:-1, -1]
    return ptr


def plateau_offsets(n, cfg, rng):
    """Stochastic plateau offsets (steps before the phase end): min(int(|N(0, sd)|), plateau_max)."""
    return np.minimum(np.abs(rng.normal(0.0, cfg.plateau_sd, size=n)).astype(np.int64), cfg.plateau_max)


@lru_cache(maxsize=512)
def _window_tables(T, lo, hi, psp, tau_L, tau_s):
    """Per-spike weights for event-driven window sums of the PSP (closed-form geometric sums).

    K[u] = sum over t in [lo, hi) of the kernel weight of a spike emitted at step u, so the window sum
    of s is sum over spikes of K[u]; E_L[u], E_s[u] = d^(T-1-u), a spike's share of the end-of-phase
    traces; G = [sum_{t in [lo, hi)} d_L^(t+1) / (tau_L - tau_s), same for d_s, d_L^T, d_s^T]: weights of traces
    carried in from before the phase in the window sum and in the end-of-phase traces.
    """
    d_L, d_s, inv = math.exp(-DT / tau_L), math.exp(-DT / tau_s), 1.0 / (tau_L - tau_s)
    u = np.arange(T)
    if psp == "exact":   # spike at u weighs kappa(t - u), kappa(0) = 0 (paper convention)
        a = np.maximum(lo, u) - u                 # first lag in the window
        e = hi - 1 - u                            # last lag in the window
        geo = lambda d: np.where(e >= a, (d ** a - d ** (e + 1)) / (1 - d), 0.0)
        K = (geo(d_L) - geo(d_s)) * inv
        E_L, E_s = d_L ** (T - 1 - u), d_s ** (T - 1 - u)
        t = np.arange(lo, hi)
        G = np.array([np.sum(d_L ** (t + 1)) * inv, np.sum(d_s ** (t + 1)) * inv, d_L ** T, d_s ** T])
    else:                # spike at u weighs kappa(t - u + 1) for t - u + 1 in 1..10 (the code)
        k10 = (d_L ** np.arange(1, 11) - d_s ** np.arange(1, 11)) * inv
        K = np.array([k10[max(lo, v) - v:max(min(hi - 1, v + 9) - v + 1, 0)].sum() for v in u])
        E_L = E_s = np.zeros(T)
        G = np.zeros(4)
    return K, E_L, E_s, G


_CONSTANTS = {}   # id(cfg) -> (cfg, constants); lru_cache would hash all of cfg's fields at every phase


def _constants(cfg):
    """The constants bundle of the step loop: (c, kappa10), c = float32 [d_L, d_s, inv, g_l, g_b, g_a, g_d,
    phi_max, E_E, E_I, dt, I_scale] with inv = 1 / (tau_L - tau_s), kappa10 = kappa(1..10) (the code's
    truncated kernel, l.162-168). float32: the per-step maths runs in float32 (see Network)."""
    hit = _CONSTANTS.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        # Eq. (19) read literally scales the teaching current by 1/tau = g_l; the code adds it unscaled
        # (C_m dV/dt = ... + I, l.1830-1869), the reading that gives Fig 4A's rates
        I_scale = 1.0 if cfg.teach_scale == "unscaled" else cfg.g_l
        c = np.array([cfg.d_L, cfg.d_s, 1.0 / (cfg.tau_L - cfg.tau_s), cfg.g_l, cfg.g_b, cfg.g_a, cfg.g_d,
                      cfg.phi_max, cfg.E_E, cfg.E_I, DT, I_scale], np.float32)
        if len(_CONSTANTS) >= 64:
            _CONSTANTS.clear()
        hit = _CONSTANTS[id(cfg)] = (cfg, (c, kappa(np.arange(1, 11), cfg).astype(np.float32)))
    return hit[1]


# ---------------------------------------------------------------------------------------------------
# One phase, plainly: Methods Eqs. (11)-(22) step by step, one Poisson draw per unit and step, float64.
# For reading next to the paper, and the oracle of the tests. The fast path below (run_phase and its
# step loop) is the same maths, event-driven: it adds a row of W per spike instead of W @ s, draws
# spikes by thinning, and sums the averaging windows in closed form.
# ---------------------------------------------------------------------------------------------------

def reference_phase(net, x, T, label, cfg, rng):
    """One forward (label None) or target phase of T steps from a zero state, as in Methods.

    Covers the paper's model (PAPER: exact kernel, averages after the settle time, spiking feedback,
    synchronous plateaus, any number of hidden layers); other configs raise ValueError. Returns the
    means over steps t_settle .. T-1 (Eq 22) of V (per layer, the last = output), V_a (per hidden
    layer) and phi_out. See Eqs 11-22. Slow: tests/test_sdnn.py checks that run_phase agrees with it.
    """
    for name, paper in (("psp", "exact"), ("window", "after_settle"), ("spiking", True),
                        ("spiking_feedback", True), ("stochastic_plateau", False), ("teach_scale", "unscaled")):
        if getattr(cfg, name) != paper:
            raise ValueError(f"reference_phase covers the paper's model only: Config.{name}="
                             f"{getattr(cfg, name)!r}, the paper's is {paper!r}; use run_phase")
    W = [w.astype(np.float64) for w in net.W]                 # W[k]: (n_k, n_(k-1)), layer L = output
    b = [v.astype(np.float64) for v in net.b]
    Y = [y.astype(np.float64) for y in net.Y]                 # Y[k]: output -> hidden layer k
    L = len(W) - 1
    sizes = [len(x)] + [len(v) for v in b]                    # populations: input, hidden layers, output
    x_L = [np.zeros(m) for m in sizes]                        # spike traces decaying with tau_L ...
    x_s = [np.zeros(m) for m in sizes]                        # ... and with tau_s (Eq. (12))
    V = [np.zeros(m) for m in sizes[1:]]                      # somatic potentials V0 (hidden), V1 (output)
    g_E, g_I = np.zeros(sizes[-1]), np.zeros(sizes[-1])       # forward phase: no teaching current
    if label is not None:                                     # target phase: excite the label's unit,
        g_E[label] = 1.0                                      # inhibit the others (Methods)
        g_I = 1.0 - g_E
    V_tr = [np.zeros((T, m)) for m in sizes[1:]]              # traces of V, V_a, phi_out for the averages
    Va_tr = [np.zeros((T, m)) for m in sizes[1:-1]]
    phi_tr = np.zeros((T, sizes[-1]))
    for t in range(T):
        # filtered spike trains s(t) = sum over the spikes before t of kappa(t - t_spike), for every
        # population (a spike of step t weighs kappa(0) = 0: it counts from step t + 1 on)
        s = [(cfg.d_L * x_L[p] - cfg.d_s * x_s[p]) / (cfg.tau_L - cfg.tau_s) for p in range(L + 2)]  # Eqs. (11)-(12)
        n = [rng.poisson(cfg.phi_max * x)]                    # input spikes at rate phi_max x (Methods)
        for k in range(L + 1):                                # bottom to top (Methods "Simulation details")
            V_b = W[k] @ s[k] + b[k]                                                           # Eqs. (13), (18)
            # Euler steps of dt of Eqs. (14) and 19 divided by tau = C_m / g_l (Eq. (16)), C_m = 1, V^R = 0
            if k < L:
                V_a = Y[k] @ s[L + 1]                                                          # Eq. (13)
                V[k] += DT * (-cfg.g_l * V[k] + cfg.g_b * (V_b - V[k]) + cfg.g_a * (V_a - V[k]))   # Eq. (14)
                Va_tr[k][t] = V_a
            else:
                I = g_E * (cfg.E_E - V[k]) + g_I * (cfg.E_I - V[k])                            # Eq. (20)
                V[k] += DT * (-cfg.g_l * V[k] + cfg.g_d * (V_b - V[k]) + I)   # Eq. (19), I unscaled as the code
            V_tr[k][t] = V[k]
            phi = cfg.phi_max * sigma(V[k])                                                    # Eq. (17)
            n.append(rng.poisson(phi))                        # Poisson spikes (Methods "Neuronal dynamics")
        phi_tr[t] = phi                                       # the output layer's rates
        for p in range(L + 2):                                # this step's spikes join the traces
            x_L[p] = cfg.d_L * x_L[p] + n[p]                  # d_L = exp(-dt / tau_L)
            x_s[p] = cfg.d_s * x_s[p] + n[p]
    after = slice(cfg.t_settle, T)                            # averages after the settle time (Eqs. (21)-(22))
    return {"V": [v[after].mean(axis=0) for v in V_tr], "V_a": [v[after].mean(axis=0) for v in Va_tr],
            "phi_out": phi_tr[after].mean(axis=0)}


# ---------------------------------------------------------------------------------------------------
# One phase of the spiking network (Eqs. (11)-(22)), fast path: run_phase draws the randomness and hands
# seven bundles to the step loop (_phase_kernel, or its NumPy twin _phase_numpy)
# ---------------------------------------------------------------------------------------------------

def run_phase(net, state, x, T, label, cfg, rng, offsets=None, record=False, jit=True, learn=True,
              window=None, cand=None):
    """Simulate one forward (label None) or target phase of T steps; update `state` in place.

    Parameters
    ----------
    net, state : Network, State
    x : (n_in,) pixels in [0, 1]; input rates are phi_max * x.
    T : int, phase length in steps.
    label : int or None; in the target phase the teaching current (Eq 20) drives unit `label`.
    offsets : list of (n_k,) plateau offsets per hidden layer, or None (synchronous plateaus).
    record : also return the traces (T, 4, n_k) per layer: V_b, V_a, V, spike counts.
    jit : use the Numba kernel (False: the NumPy twin, same maths, slow).
    window : (lo, hi) steps averaged; default: the training window of cfg.window (Eq 22).
    cand : (counts, seed) of the candidate spikes (draw_candidates), if drawn already.
    learn : False skips what only learning needs (window sums of s, the hidden layers' averages of V
        and V_a, returned as zeros, and, when g_a = 0 and nothing is recorded, the apical compartment,
        output spikes and output rates phi_out, which then cannot act on V).
        A test phase needs only the output's mean V.

    Returns a dict of window averages: V (per layer), V_a (hidden), phi_out, s (presynaptic PSPs per
    population, the s-bar of Eqs 28 and 33), spike counts and, for the code's kernel, the spikes of
    the last 10 steps.

    Notes
    -----
    The bundles of the step loop are plain tuples (Numba types them fastest), unpacked by name in
    its first lines:
      weights (WT, b, YT): W^T, b, Y^T per layer (Y^T of the hidden layers);
      state: the arrays of State, in its field order, and pos;
      draws (ptr, seed, acc, act, x_act): candidate spikes (draw_candidates), their acceptance flags,
        the inputs with a non-zero rate and those rates;
      phase (T, lo, hi, lo_a, hi_a, K, E_L, E_s, G, g_E, g_I): length, averaging window, plateau
        windows per hidden layer, the window tables (_window_tables), teaching conductances (_teacher);
      sums (s_sum, V_sum, Va_sum, phi_sum, n_spk, rec): what the loop fills, window sums of s per
        population, of V and V_a per layer, of phi_out; spikes per population; recorded traces;
      consts (c, kappa10): _constants(cfg);
      flags (truncated, spiking_fb, learn, apical, record).
    """
    L = len(net.W) - 1
    n = tuple(w.shape[0] for w in net.W)
    draws, phase, rec, flags = _phase_setup(net, x, T, label, cfg, rng, offsets, record, learn, window, cand)
    T, lo, hi, lo_a, hi_a = phase[:5]
    s_sum = tuple(np.empty(w.shape[1]) for w in net.W)        # the loop starts them
    V_sum, Va_sum = tuple(np.zeros(m) for m in n), tuple(np.zeros(m) for m in n)   # Va_sum[L] unused
    phi_sum, n_spk = np.zeros(n[L]), np.zeros(L + 2, np.int64)   # n_spk: spikes per population
    sums = (s_sum, V_sum, Va_sum, phi_sum, n_spk, rec)
    step_loop = _phase_kernel if jit else _phase_numpy
    state.pos = step_loop(_weights(net), _state_tuple(state), draws, phase, sums, _constants(cfg), flags)
    ptr, seed, acc, act, _ = draws
    W_len = hi - lo
    out = {"V": [v / W_len for v in V_sum],
           "V_a": [Va_sum[k] / (hi_a[k] - lo_a[k]) for k in range(L)],
           "phi_out": phi_sum / W_len,
           "s": [v / W_len for v in s_sum],
           "n_spikes": n_spk.tolist(), "T": T}
    if cfg.psp == "truncated10" and learn and label is not None:
        # spikes of the last 10 steps per population, for the exact ring update after the weight
        # update (_fix_traces reads the target phase's only)
        last = []
        for p in range(L + 1):
            m = len(act) if p == 0 else n[p - 1]
            steps = []
            for t in range(T - 10, T):
                e = slice(ptr[p, t], ptr[p, t + 1])
                idx = (candidate_uniforms(seed, e.start, e.stop) * m).astype(np.int64)[acc[e].astype(bool)]
                steps.append(act[idx] if p == 0 else idx)
            last.append(steps)
        out["last10"] = last
    if record:
        out["trace"] = rec
    if offsets is not None:
        out["plateau_time"] = [h - 1 for h in hi_a]
    return out


def _phase_setup(net, x, T, label, cfg, rng, offsets, record, learn, window, cand=None):
    """The draws, phase and flags bundles of one phase and its record arrays (see run_phase); cand:
    (counts, seed) of the candidates (draw_candidates), if drawn already."""
    n = tuple(w.shape[0] for w in net.W)
    act, x_act = _active(x)
    counts, seed = cand or draw_candidates((len(act),) + n, T, cfg, rng)
    ptr = candidate_ptr(counts)
    acc = np.zeros(ptr[-1, -1], np.uint8)                     # 1 where a candidate became a spike
    draws = (ptr, seed, acc, act, x_act)
    return (draws, *_phase_bundle(n, T, label, cfg, offsets, record, learn, window))


def _phase_bundle(n, T, label, cfg, offsets, record, learn, window):
    """The phase and flags bundles of one phase of layers of sizes n, and its record arrays (see run_phase)."""
    L = len(n) - 1
    if window is None:   # Eq. (22): after the settle time; the code: the last 20 steps of a phase (l.96)
        window = (cfg.t_settle, T) if cfg.window == "after_settle" else (T - 20, T)
    lo, hi = window
    if offsets is None:   # apical window per unit: synchronous = the averaging window (Eq. (21))
        lo_a, hi_a = _sync_windows(n[:L], lo, hi)
    else:   # plateau `offset` steps before the end, average of the last 30 ms (Methods) or 20 steps (code)
        hi_a = tuple(T - o for o in offsets)
        lo_a = tuple(h - (30 if cfg.window == "after_settle" else 20) for h in hi_a)
    phase = (T, lo, hi, lo_a, hi_a, *_window_tables(T, lo, hi, cfg.psp, cfg.tau_L, cfg.tau_s),
             *_teacher(n[L], label))
    rec = tuple(np.zeros((T, 4, m), np.float32) for m in n) if record else _dummy_rec(n)
    flags = (cfg.psp == "truncated10", cfg.spiking_feedback, learn, learn or record or cfg.g_a != 0, record)
    return phase, rec, flags


def _active(x):
    """The inputs with a non-zero rate, and their pixel values."""
    x = np.asarray(x)
    act = np.flatnonzero(x)
    return act, x[act].astype(np.float64)


def _weights(net):
    """The weights bundle: W^T, b, Y^T per layer (Y^T of the hidden layers)."""
    L = len(net.W) - 1
    return tuple(w.T for w in net.W), tuple(net.b), tuple(y.T for y in net.Y) if L else _dummy_Y(len(net.b[L]))


def _state_tuple(state):
    """The state bundle: the arrays of State in its field order, and pos."""
    return (state.u_L, state.u_s, state.a_L, state.a_s, state.V, state.ring_b, state.ring_a, state.x_L,
            state.x_s, state.out_L, state.out_s, state.n_out_hist, state.phi_out, state.pos)


@lru_cache(maxsize=256)
def _sync_windows(sizes, lo, hi):
    """Synchronous plateaus: one window [lo, hi) for all units, passed as length-1 arrays."""
    return (tuple(np.full(1, lo, np.int64) for m in sizes) or (np.zeros(1, np.int64),),
            tuple(np.full(1, hi, np.int64) for m in sizes) or (np.zeros(1, np.int64),))


@lru_cache(maxsize=64)
def _teacher(n_out, label):
    """Teaching conductances (Eq 20): target phase g_E = 1 on `label`, g_I = 1 on the others (Methods)."""
    gE = np.zeros(n_out, np.float32)
    gI = np.zeros(n_out, np.float32)
    if label is not None:
        gE[label] = 1.0
        gI[:] = 1.0
        gI[label] = 0.0
    return gE, gI


@lru_cache(maxsize=16)
def _dummy_rec(n):
    return tuple(np.zeros((1, 4, m), np.float32) for m in n)


@lru_cache(maxsize=16)
def _dummy_Y(n_out):
    return (np.zeros((n_out, 1), np.float32),)


def _phase_numpy(weights, state, draws, phase, sums, consts, flags):
    """NumPy twin of _phase_kernel: the step loop of one phase, vectorised over units. Returns pos."""
    WT, b, YT = weights
    u_L, u_s, a_L, a_s, V, ring_b, ring_a, x_L, x_s, out_L, out_s, n_out_hist, phi_out, pos = state
    ptr, seed, acc, act, x_act = draws
    T, lo, hi, lo_a, hi_a, K, E_L, E_s, G, g_E, g_I = phase
    s_sum, V_sum, Va_sum, phi_sum, n_spk, rec = sums
    c, kappa10 = consts
    d_L, d_s, inv, g_l, g_b, g_a, g_d, phi_max, E_E, E_I, dt, I_scale = c
    truncated, spiking_fb, learn, apical, record = flags
    L = len(WT) - 1
    for p in range(L + 1):   # traces carried in from before the phase (exact kernel; G = 0 for truncated10)
        s_sum[p][:] = x_L[p] * G[0] - x_s[p] * G[1]
        x_L[p][:] *= G[2]
        x_s[p][:] *= G[3]
    for t in range(T):
        # ---- input spikes: one shared increment W0[:, j] per spike for both traces (Eq. (11)) ----
        e = slice(ptr[0, t], ptr[0, t + 1])
        w = candidate_uniforms(seed, e.start, e.stop) * len(act)
        a = w.astype(np.int64)
        keep = w - a < x_act[a]                          # thinning: kept with probability x_j
        acc[e] = keep
        spk = act[a[keep]]
        n_spk[0] += len(spk)
        inc = _spikes_up_numpy(spk, WT[0], learn, s_sum[0], x_L[0], x_s[0], K[t], E_L[t], E_s[t])
        for k in range(L + 1):                           # bottom to top (Methods "Simulation details")
            # ---- basal / output dendrite: V_b = W s + b (Eqs. (13), (18)) ----
            if truncated:   # the code: s = sum_{q=1..10} kappa(q) n_{t-q+1}
                ring_b[k][pos] = inc
                V_b = b[k].copy()
                for q in range(10):
                    V_b += kappa10[q] * ring_b[k][(pos - q) % 10]
            else:
                u_L[k][:] = d_L * u_L[k] + inc           # u_L = W x_L
                u_s[k][:] = d_s * u_s[k] + inc           # u_s = W x_s
                V_b = (u_L[k] - u_s[k]) * inv + b[k]     # Eqs. (12)-(13)
            if k < L:
                # ---- apical: V_a = Y s_out, output spikes up to the previous step (Eq. (13)) ----
                if not apical:
                    V_a = np.zeros_like(V_b)
                elif not spiking_fb:
                    V_a = (YT[k] * phi_out[:, None]).sum(axis=0, dtype=np.float32)   # Fig 7A, rate feedback
                elif truncated:
                    V_a = np.zeros_like(V_b)
                    for q in range(1, 11):
                        V_a += kappa10[q - 1] * ring_a[k][(pos - q) % 10]
                else:
                    V_a = (a_L[k] - a_s[k]) * inv        # Eqs. (12)-(13)
                # ---- soma (Eq. (14)) ----
                V[k][:] += dt * (-g_l * V[k] + g_b * (V_b - V[k]) + g_a * (V_a - V[k]))      # Eq. (14)
            else:
                # ---- output soma with the teaching current, and its rate (Eqs. (17), (19)-(20)) ----
                I = I_scale * (g_E * (E_E - V[k]) + g_I * (E_I - V[k]))                      # Eq. (20)
                V[k][:] += dt * (-g_l * V[k] + g_d * (V_b - V[k]) + I)                       # Eq. (19)
                V_a = np.zeros_like(V_b)
                if apical:                               # the output rates feed back or are learned from
                    phi_out[:] = phi_max * sigma(V[k].astype(np.float64))                    # Eq. (17)
            if k < L and learn:                          # plateau window (Eq. (21))
                in_win = (lo_a[k] <= t) & (t < hi_a[k])  # per unit; length 1 = synchronous (lo, hi)
                Va_sum[k][:] += np.where(in_win, V_a, np.float32(0))
            # ---- window sums: V, and phi_out (Eq. (6)) ----
            if lo <= t < hi and (learn or k == L):
                V_sum[k][:] += V[k]
                if k == L and apical:
                    phi_sum[:] += phi_out
            if record:
                rec[k][t, 0], rec[k][t, 1], rec[k][t, 2] = V_b, V_a, V[k]
            # ---- spikes by thinning: keep a candidate iff its uniform < sigma(V) (Eq. (17)) ----
            e = slice(ptr[k + 1, t], ptr[k + 1, t + 1] if (k < L or apical) else ptr[k + 1, t])
            w = candidate_uniforms(seed, e.start, e.stop) * len(b[k])
            i = w.astype(np.int64)                       # unit = integer part
            keep = w - i < sigma(V[k][i])                # uniform = fractional part; float32 sigma
            acc[e] = keep
            spk = i[keep]
            n_spk[k + 1] += len(spk)
            if record:
                np.add.at(rec[k][t, 3], spk, 1.0)
            if k < L:                                    # spikes feed layer k + 1
                inc = _spikes_up_numpy(spk, WT[k + 1], learn, s_sum[k + 1], x_L[k + 1], x_s[k + 1], K[t],
                                       E_L[t], E_s[t])
            else:
                n_out = np.bincount(spk, minlength=len(b[L])).astype(np.float64)
        # ---- output spikes reach the apical dendrites from the next step on ----
        out_L[:] = d_L * (out_L + n_out)
        out_s[:] = d_s * (out_s + n_out)
        n_out_hist[pos] = n_out
        for k in range(L if apical else 0):
            inc_a = (YT[k] * n_out[:, None].astype(np.float32)).sum(axis=0, dtype=np.float32)   # Y n_out
            if truncated:
                ring_a[k][pos] = inc_a
            else:
                a_L[k][:] = d_L * (a_L[k] + inc_a)
                a_s[k][:] = d_s * (a_s[k] + inc_a)
        pos = (pos + 1) % 10
    for p in range(L + 1):   # flush traces below 1e-20 of one spike: invisible in float32, no denormals
        x_L[p][x_L[p] < 1e-20] = 0.0
        x_s[p][x_s[p] < 1e-20] = 0.0
    return pos


def _spikes_up_numpy(spk, WT, learn, s_sum, x_L, x_s, K_t, EL_t, Es_t):
    """Twin of _spikes_up: the next layer's basal increment W n, and the spikes' window shares."""
    if learn:
        np.add.at(s_sum, spk, K_t)                       # window sum of s (s-bar, Eqs. (28), (33))
        np.add.at(x_L, spk, EL_t)                        # presynaptic traces at the phase end
        np.add.at(x_s, spk, Es_t)
    return WT[spk].sum(axis=0, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------
# Learning (Eqs. (23)-(35), (38)-(41))
# ---------------------------------------------------------------------------------------------------

def output_error(phi_t, V_f, cfg):
    """E_L = -k_d phi_max (phi* - phi_max sigma(V-bar^f)) sigma'(V-bar^f), the factor of Eq 28."""
    return -cfg.k_d * cfg.phi_max * (phi_t - cfg.phi_max * sigma(V_f)) * dsigma(V_f)        # Eq. (28)


def hidden_error(alpha_t, alpha_f, V_f, cfg):
    """E_k = -k_b phi_max (alpha^t - alpha^f) sigma'(V-bar^f), the factor of Eq 33."""
    return -cfg.k_b * cfg.phi_max * (alpha_t - alpha_f) * dsigma(V_f)                        # Eq. (33)


def update_weights(net, k, E, s, eta, P, jit=True):
    """W_k -= eta P E s^T, b_k -= eta P E (Eqs 29, 35). Returns the scale -eta P (for trace fixes)."""
    scale = -eta * P
    if jit:   # same update on W_k^T, skipping inputs with s_j = 0
        _rank1_kernel(net.W[k].T, scale, E.astype(np.float32), s)
    else:
        net.W[k] += (scale * np.outer(E, s)).astype(np.float32)   # Eq. (29) (output) / Eq. (35) (hidden)
    net.b[k] += (scale * E).astype(np.float32)
    return scale


def train_example(net, state, x, label, cfg, rng, record=False, jit=True, update=True):
    """One training example: forward phase, target phase, one update of all layers (Methods, "Training paradigm").
    update=False runs both phases without changing the weights (Fig 5B: L0 and L1 of test images).

    Returns a dict: L0 (Eq 32, first hidden layer) and L1 (Eq 23, output), the predicted class of the
    forward phase, alpha_f/alpha_t, the backprop angle of the first hidden layer (Fig 7A, degrees; with
    jit=False also the two errors it compares, E0 and E0_bp), and with record=True the traces, the
    Jacobians of Fig 5-S1 and the phase lengths.
    """
    if not cfg.spiking:
        return rate_train_example(net, x, label, cfg, rng, update)
    L = len(net.W) - 1
    if cfg.reset_each_example:
        _reset(state)
    T_f, T_t = phase_lengths(2, cfg, rng).tolist()
    off_f = off_t = None
    if cfg.stochastic_plateau:
        off_f = [plateau_offsets(net.W[k].shape[0], cfg, rng) for k in range(L)]
        off_t = [plateau_offsets(net.W[k].shape[0], cfg, rng) for k in range(L)]
    sizes = (np.count_nonzero(x),) + tuple(len(v) for v in net.b)   # active inputs, hidden layers, output
    counts, seed = draw_candidates(sizes, T_f + T_t, cfg, rng)       # both phases at once
    if jit:
        info = _train_example_kernel(net, state, np.asarray(x), label, (T_f, T_t), (off_f, off_t), cfg,
                                     (counts, seed), record, update)
    else:   # the twin: both phases with _phase_numpy, the errors and updates in NumPy
        cand_f, cand_t = example_candidates(counts, seed, T_f)
        f = run_phase(net, state, x, T_f, None, cfg, rng, off_f, record, jit, cand=cand_f)
        t = run_phase(net, state, x, T_t, int(label), cfg, rng, off_t, record, jit, cand=cand_t)
        alpha_f = [sigma(v) for v in f["V_a"]]                                             # Eq. (21)
        alpha_t = [sigma(v) for v in t["V_a"]]
        V_f = f["V"]
        E, info = _errors(alpha_f, alpha_t, t["phi_out"], cfg.phi_max * sigma(V_f[L]), V_f, cfg)
        info.update(n_spikes=[a + b for a, b in zip(f["n_spikes"], t["n_spikes"])], T=(T_f, T_t), V_out_f=V_f[L])
        if record:
            info.update(trace_f=f["trace"], trace_t=t["trace"], V_a_f=f["V_a"], V_a_t=t["V_a"])
            if L:
                info["J_beta"], info["J_gamma"] = jacobians(net, V_f[L], cfg)
        if cfg.stochastic_plateau:
            info["plateau_time"] = (f["plateau_time"], t["plateau_time"])
        _learn_top_down(net, E, f["s"], V_f, cfg, info, update, jit,
                        fix=lambda k, scale: _fix_traces(state, k, scale * E[k], f["s"][k], t, cfg))
    if cfg.symmetric_feedback and update:
        make_symmetric(net, cfg, rng)
        _refresh_apical(net, state, cfg)
    return info


def _train_example_kernel(net, state, x, label, T, offsets, cfg, cand, record, update):
    """train_example's fast path: one call of _example_kernel for both phases and the updates, which
    numbers the candidates (cand: counts of both phases, seed) and finds the active inputs itself.
    Returns the same info as the NumPy path."""
    n = tuple(len(v) for v in net.b)
    L = len(n) - 1
    p_f, rec_f, flags = _phase_bundle(n, T[0], None, cfg, offsets[0], record, True, None)
    p_t, rec_t, _ = _phase_bundle(n, T[1], int(label), cfg, offsets[1], record, True, None)
    counts, seed = cand
    seeds = np.array([seed, _second_seed(seed)], np.uint64)
    if record and L:   # the Jacobians of Fig 5-S1 with the weights before the update, as the NumPy path
        before = Network(net.W[:L] + [net.W[L].copy()], net.b, net.Y[:L - 1] + [net.Y[L - 1].copy()])
    n_max = max(n)
    res, V_f, avg, n_spk = np.zeros(4), np.empty((L + 1, n_max)), np.zeros((4, max(L, 1), n_max)), \
        np.empty(L + 2, np.int64)
    state.pos = _example_kernel(_weights(net), _state_tuple(state), (x, counts, seeds), ((p_f, rec_f), (p_t, rec_t)),
                                _constants(cfg), _learning(cfg, update), flags, (res, V_f, avg, n_spk))
    info = {"L1": float(res[1]), "L0": float(res[0]), "pred": int(res[2]),
            "alpha_f": [avg[0, k, :n[k]] for k in range(L)], "alpha_t": [avg[1, k, :n[k]] for k in range(L)],
            "n_spikes": n_spk.tolist(), "T": T, "V_out_f": V_f[L, :n[L]]}
    if L:
        info["angle"] = float(res[3])
    if record:
        info.update(trace_f=rec_f, trace_t=rec_t, V_a_f=[avg[2, k, :n[k]] for k in range(L)],
                    V_a_t=[avg[3, k, :n[k]] for k in range(L)])
        if L:
            info["J_beta"], info["J_gamma"] = jacobians(before, info["V_out_f"], cfg)
    if cfg.stochastic_plateau:
        info["plateau_time"] = tuple([p[4][k] - 1 for k in range(L)] for p in (p_f, p_t))
    return info


_LEARNING = {}   # (id(cfg), update) -> (cfg, bundle), as _CONSTANTS


def _learning(cfg, update):
    """The learning bundle of _example_kernel: (etas, P per layer, k_b, k_d, phi_max, update, backprop)."""
    hit = _LEARNING.get((id(cfg), update))
    if hit is None or hit[0] is not cfg:
        L = len(cfg.hidden)
        bundle = (np.array(cfg.etas, np.float64), np.array([cfg.P0] * L + [cfg.P1]), cfg.k_b, cfg.k_d,
                  cfg.phi_max, update, cfg.backprop)
        if len(_LEARNING) >= 64:
            _LEARNING.clear()
        hit = _LEARNING[(id(cfg), update)] = (cfg, bundle)
    return hit[1]


def _errors(alpha_f, alpha_t, phi_t, phi_f, V_f, cfg):
    """Errors E per layer (Eqs 28, 33, 39-40) and the example's info: L0, L1, forward prediction."""
    L = len(V_f) - 1
    E = [hidden_error(alpha_t[k], alpha_f[k], V_f[k], cfg) for k in range(L)]               # Eqs. (33), (39)-(40)
    E.append(output_error(phi_t, V_f[L], cfg))                                               # Eq. (28)
    info = {"L1": float(np.sum((phi_t - phi_f) ** 2)),                                       # Eq. (23)
            "L0": float(np.sum((alpha_t[0] - alpha_f[0]) ** 2)) if L else 0.0,               # Eq. (32)
            "pred": int(np.argmax(V_f[L])), "alpha_f": alpha_f, "alpha_t": alpha_t}
    return E, info


def _learn_top_down(net, E, s, V_f, cfg, info, update=True, jit=True, fix=None):
    """W_k -= eta_k P E_k s_k^T from the top down, as the code (output first); info["angle"] gets the
    first hidden layer's angle to backprop (Fig 7A), whose error uses the new W_(k+1) (the code l.1554), and
    info["E0"], info["E0_bp"] the two errors it compares. fix(k, scale) runs after each update (the spiking
    state's traces)."""
    L = len(net.W) - 1
    E_bp = E[L]
    for k in range(L, -1, -1):
        if k < L:
            E_bp = (net.W[k + 1].T @ E_bp) * cfg.k_b * cfg.phi_max * dsigma(V_f[k])  # backprop's (the code l.1554-1556)
            if k == 0:
                info["angle"] = _angle(E[0], E_bp)
                info["E0"], info["E0_bp"] = E[0], E_bp       # arrays no step below changes in place
            if cfg.backprop:      # the twin: W_k learns from backprop's error (the code l.1554-1556)
                E[k] = E_bp
        if update:
            scale = update_weights(net, k, E[k], s[k], cfg.etas[k], cfg.P1 if k == L else cfg.P0, jit)
            if fix:
                fix(k, scale)


def _fix_traces(state, k, scaled_E, s, phase, cfg):
    """After W_k += scaled_E s^T, make the postsynaptic traces equal W_k(new) x again (exact)."""
    if cfg.psp == "exact":   # u = W x: W(new) x = u + scaled_E (s . x)
        state.u_L[k][:] += (scaled_E * (s @ state.x_L[k])).astype(np.float32)
        state.u_s[k][:] += (scaled_E * (s @ state.x_s[k])).astype(np.float32)
    else:   # ring slot of step T-10+i is (pos - 10 + i) % 10
        for i, spk in enumerate(phase["last10"][k]):
            state.ring_b[k][(state.pos - 10 + i) % 10] += (scaled_E * s[spk].sum()).astype(np.float32)


def _refresh_apical(net, state, cfg):
    """After Y changed: apical traces a = Y out (exact) or ring_a = Y n_out (truncated)."""
    for k in range(len(net.Y)):
        if cfg.psp == "exact":
            state.a_L[k][:] = net.Y[k] @ state.out_L
            state.a_s[k][:] = net.Y[k] @ state.out_s
        else:
            state.ring_a[k][:] = state.n_out_hist @ net.Y[k].T


def _reset(state):
    """Zero the state in place (reset_each_example)."""
    for a in (state.u_L + state.u_s + state.a_L + state.a_s + state.V + state.ring_b + state.ring_a + state.x_L
              + state.x_s + (state.out_L, state.out_s, state.n_out_hist, state.phi_out)):
        a[...] = 0
    state.pos = 0


def _angle(a, b):
    """Angle in degrees between two vectors (nan if one is zero)."""
    norms = math.sqrt(float(a @ a) * float(b @ b))
    if norms == 0:
        return float("nan")
    return math.degrees(math.acos(min(1.0, max(-1.0, float(a @ b) / norms))))


def jacobians(net, V_out_f, cfg):
    """J_beta = phi_max sigma'(V-bar_out) * k_d W_L, J_gamma = sigma'(Y phi_max sigma(V-bar_out)) * Y
    for the last hidden layer (Theorem 1; Fig 5-S1; code l.564-565). Rows scaled."""
    J_beta = (cfg.phi_max * dsigma(V_out_f))[:, None] * (cfg.k_d * net.W[-1])
    Y = net.Y[-1]
    J_gamma = dsigma(Y @ (cfg.phi_max * sigma(V_out_f)))[:, None] * Y
    return J_beta, J_gamma


def train_epoch(net, state, X, y, cfg, rng, record_every=0, progress=None, jit=True):
    """Train on X, y in the given order, one example at a time. Returns per-example arrays
    (L0, L1, correct, angle), total spikes per population ("n_spikes", spiking mode) and every
    `record_every`-th example's full info in "records"."""
    N = len(X)
    out = {"L0": np.zeros(N), "L1": np.zeros(N), "correct": np.zeros(N, bool), "angle": np.full(N, np.nan)}
    if not cfg.spiking and not cfg.symmetric_feedback and not record_every:
        for a in range(0, N, 1000):   # batched kernel calls, per-example results
            n = min(1000, N - a)
            r = _rate_train_many(net, X[a:a + n], y[a:a + n], cfg, jit)
            for key in ("L0", "L1", "correct"):
                out[key][a:a + n] = r[key]
            if progress:
                progress(n)
        return out
    out["records"] = []
    n_spikes = 0
    for i in range(N):
        rec = record_every and i % record_every == 0
        info = train_example(net, state, X[i], y[i], cfg, rng, record=bool(rec), jit=jit)
        n_spikes = n_spikes + np.array(info.get("n_spikes", 0))
        out["L0"][i], out["L1"][i] = info["L0"], info["L1"]
        out["correct"][i] = info["pred"] == y[i]
        out["angle"][i] = info.get("angle", np.nan)
        if rec:
            out["records"].append(info)
        if progress:
            progress(1)
    out["n_spikes"] = n_spikes
    return out


# ---------------------------------------------------------------------------------------------------
# Testing (Methods "Training paradigm"): one forward phase per image, fresh state, no teaching current;
# the class is the output unit with the largest mean somatic potential.
# ---------------------------------------------------------------------------------------------------

def test_example(net, x, cfg, rng, jit=True):
    """Mean somatic output potentials V-bar_L over [t_settle, test_ms) for one image."""
    # both the paper and the code average a test phase after the settle time: the code's
    # integration_time_test = 220 of its 250 steps (l.94, 97), whatever its training window
    window = (cfg.t_settle, cfg.test_ms)
    if not jit:   # the twin: run_phase from a cleared state, as the code before each test image (l.1337)
        return run_phase(net, init_state(net), x, cfg.test_ms, None, cfg, rng, jit=jit, learn=False,
                         window=window)["V"][-1]
    # fast path: the same draws as run_phase, one kernel call that starts from a zero state of its own
    n, x = tuple(len(v) for v in net.b), np.asarray(x)
    counts, seed = draw_candidates((np.count_nonzero(x),) + n, cfg.test_ms, cfg, rng)
    phase, rec, flags = _phase_bundle(n, cfg.test_ms, None, cfg, None, False, False, window)
    V_out = np.empty(n[-1])
    _test_kernel(_weights(net), (x, counts, seed), phase, rec, _constants(cfg), flags, V_out)
    return V_out


def hidden_rates(net, X, cfg, rng):
    """Mean rates phi_max sigma(V-bar) of every hidden layer over a test phase, one row per image of X
    (the activity of Fig 6C): list of (N, n_k) arrays."""
    L = len(net.W) - 1
    rates = [np.zeros((len(X), w.shape[0]), np.float32) for w in net.W[:L]]
    for i, x in enumerate(X):
        out = run_phase(net, init_state(net), x, cfg.test_ms, None, cfg, rng, window=(cfg.t_settle, cfg.test_ms))
        for k in range(L):
            rates[k][i] = cfg.phi_max * sigma(out["V"][k])                        # Eq. (17)
    return rates


def predict(net, X, cfg, rng, n_jobs=2, chunk=20, jit=True, progress=None):
    """Predicted classes for images X (N, n_in). Spiking mode runs chunks of `chunk` images in
    `n_jobs` threads (the kernel releases the GIL); each chunk has its own Generator spawned from
    one SeedSequence drawn from rng, so the result does not depend on n_jobs. progress(n) is called
    after each chunk with its number of images (a progress bar's update)."""
    X = np.asarray(X)
    if not cfg.spiking:
        return rate_forward(net, X, cfg)[-1].argmax(axis=1)
    starts = range(0, len(X), chunk)
    seeds = np.random.SeedSequence(int(rng.integers(2 ** 63))).spawn(len(starts))

    def run(i):
        g = np.random.default_rng(seeds[i])
        a = starts[i]
        classes = [int(np.argmax(test_example(net, x, cfg, g, jit))) for x in X[a:a + chunk]]
        if progress:
            progress(len(classes))
        return classes

    if n_jobs <= 1:
        parts = [run(i) for i in range(len(starts))]
    else:
        with ThreadPoolExecutor(n_jobs) as pool:
            parts = list(pool.map(run, range(len(starts))))
    return np.array([p for part in parts for p in part], dtype=np.int64)


def test_error(net, X, y, cfg, rng, n_jobs=2):
    """Percentage of images classified wrongly."""
    return float(100.0 * np.mean(predict(net, X, cfg, rng, n_jobs) != np.asarray(y)))


# ---------------------------------------------------------------------------------------------------
# Rate mode: the code's "non-spiking" default at a41ebc8 (l.53, 99-117). Two steps per phase, averages
# over one step, so every quantity is its steady state: V = k_b V_b (hidden), V = k_d V_b (output,
# forward), V = (g_d V_b + g_E E_E + g_I E_I) / (g_l + g_d + g_E + g_I) (output, target); the
# presynaptic factor s is the rate phi of the layer below (the input: phi_max x). Not the paper's model.
# ---------------------------------------------------------------------------------------------------

def rate_forward(net, X, cfg):
    """Forward-phase somatic potentials of every layer for a batch X (B, n_in) (rows are examples)."""
    s = cfg.phi_max * np.asarray(X, np.float32)
    V = []
    for k in range(len(net.W)):
        Vb = s @ net.W[k].T + net.b[k]                               # Eqs. (13), (18)
        V.append((cfg.k_d if k == len(net.W) - 1 else cfg.k_b) * Vb)  # steady states (Eqs. (26), (34))
        s = cfg.phi_max * sigma(V[-1])                               # Eq. (17)
    return V


def rate_train_example(net, x, label, cfg, rng=None, update=True):
    """One rate-mode example in NumPy (readable twin of _rate_kernel); updates net in place (unless
    update=False)."""
    L = len(net.W) - 1
    s = [cfg.phi_max * np.asarray(x, np.float64)]
    V = []
    for k in range(L + 1):
        Vb = net.W[k] @ s[k] + net.b[k]                                        # Eqs. (13), (18)
        V.append((cfg.k_d if k == L else cfg.k_b) * Vb)                        # Eqs. (26), (34)
        s.append(cfg.phi_max * sigma(V[k]))                                    # Eq. (17)
    g_E = np.eye(cfg.n_out)[label]
    g_I = 1.0 - g_E
    V_t = (cfg.g_d * V[L] / cfg.k_d + g_E * cfg.E_E + g_I * cfg.E_I) / (cfg.g_l + cfg.g_d + g_E + g_I)
    phi_t = cfg.phi_max * sigma(V_t)                                           # Eq. (6)
    alpha_f = [sigma(net.Y[k] @ s[L + 1]) for k in range(L)]                   # Eq. (21), rates fed back
    alpha_t = [sigma(net.Y[k] @ phi_t) for k in range(L)]
    E, info = _errors(alpha_f, alpha_t, phi_t, s[L + 1], V, cfg)
    _learn_top_down(net, E, s, V, cfg, info, update)
    if cfg.symmetric_feedback and update:
        make_symmetric(net, cfg, rng)
    return info


def _rate_train_many(net, X, y, cfg, jit=True):
    """Rate-mode training on X, y in order, with the Numba kernel (or its twin when jit=False)."""
    if not jit:
        infos = [rate_train_example(net, x, int(t), cfg) for x, t in zip(X, y)]
        return {"L0": [i["L0"] for i in infos], "L1": [i["L1"] for i in infos],
                "correct": [i["pred"] == t for i, t in zip(infos, y)]}
    L = len(net.W) - 1
    res = np.zeros((len(X), 3))
    _rate_kernel(tuple(w.T for w in net.W), tuple(net.b),
                 tuple(y_.T for y_ in net.Y) if L else (np.zeros((cfg.n_out, 1), np.float32),),
                 np.ascontiguousarray(X, np.float32), np.asarray(y, np.int64),
                 np.array([cfg.phi_max, cfg.k_b, cfg.k_d, cfg.g_l, cfg.g_d, cfg.E_E, cfg.E_I,
                           cfg.P0, cfg.P1]), np.array(cfg.etas, np.float64), res)
    return {"L0": res[:, 0], "L1": res[:, 1], "correct": res[:, 2] == np.asarray(y)}


# ===================================================================================================
# Numba kernels: same maths as above, explicit loops. Same banners and Eq. tags as their twins
# (_phase_numpy, train_example's NumPy path, rate_train_example). No fastmath (results must be
# reproducible); NUMBA_DISABLE_JIT=1 turns them into plain Python for pdb.
#
# The step loop is one flat function on padded 2-D copies of the state, row k = layer k (or population
# p), made once per call (_work_in, _work_out). Numba counts references to arrays with atomic
# operations: every array taken out of a tuple, or passed to an inlined helper, inside the loop costs two
# of them, which took 7 % of the training time (perf) when the loop used helpers on State's tuples. In
# this form LLVM also vectorises the loops over units (8 floats at a time), which it did not for the
# hidden layer's one-pass update on State's rows.
# ===================================================================================================

@njit(cache=True, nogil=True, inline="always")
def _sig(v):
    """Logistic function of a float64: scipy's expit bit for bit (both 1 / (1 + exp(-v)))."""
    return 1.0 / (1.0 + math.exp(-v))


@njit(cache=True, nogil=True, inline="always")
def _uniform(seed, e):
    """The uniform in [0, 1) of candidate e of the stream `seed`: SplitMix64 (twin: candidate_uniforms)."""
    z = seed + np.uint64(e + 1) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * 2.0 ** -53


if numba.config.DISABLE_JIT:   # plain Python (NUMBA_DISABLE_JIT=1): the same number, without the warnings of
    def _uniform(seed, e):      # NumPy's scalar uint64 arithmetic, which wraps as the kernel's does
        """The uniform of candidate e of the stream `seed` (candidate_uniforms)."""
        return candidate_uniforms(seed, e, e + 1)[0]


@njit(cache=True, nogil=True, inline="always")
def _sig32(v):
    """Logistic function of a float32 in float32 (expf: half the cost of exp, as precise as V)."""
    one = np.float32(1.0)
    return one / (one + math.exp(-v))


@njit(cache=True, nogil=True)
def _phase_kernel(weights, state, draws, phase, sums, consts, flags):
    """One phase (twin: _phase_numpy; the bundles: run_phase): the step loop on work copies of the
    state, whose window sums are copied into `sums`. Returns the new ring position."""
    s_sum, V_sum, Va_sum, phi_sum, n_spk, rec = sums
    work = _work_in(weights, state, flags[0])
    w_sums = _work_sums(work, weights[1], rec)
    pos = _step_loop(weights, work, state[-1], draws, phase, w_sums, consts, flags)
    _work_out(work, state, flags[0])
    s_w, V_w, Va_w, phi_w, n_w, _ = w_sums
    for p in range(len(s_sum)):
        s_sum[p][:] = s_w[p, :s_sum[p].shape[0]]
    for k in range(len(V_sum)):
        V_sum[k][:] = V_w[k, :V_sum[k].shape[0]]
        Va_sum[k][:] = Va_w[k, :Va_sum[k].shape[0]]
    phi_sum[:] = phi_w
    n_spk[:] = n_w
    return pos


@njit(cache=True, nogil=True)
def _example_kernel(weights, state, cand, phases, consts, learning, flags, outs):
    """One training example (twin: train_example(jit=False)): forward and target phase, the errors, and
    the updates of all layers from the top down, each followed by its trace fix-up.

    cand: (x, counts, seeds), the image, the candidate counts of both phases (n_pop, T_f + T_t) and the
    seeds of their uniforms, from which the kernel builds each phase's draws bundle (as _phase_setup).
    phases: (phase, rec) of the forward and of the target phase (the bundles of run_phase).
    learning: (etas, P, k_b, k_d, phi_max, update, backprop), P per layer (P0, ..., P0, P1).
    Returns the new ring position, and fills outs = (res, V_f, avg, n_spk): res = [L0, L1, predicted class,
    angle to backprop's error (degrees)]; the forward phase's mean V (L + 1, n_max); avg = [alpha_f, alpha_t,
    mean V_a forward, mean V_a target] (4, L, n_max); the spikes per population in both phases (L + 2).
    Filled, not returned: a returned array is boxed through a Python call (numba's _numba_unpickle), where a
    SIGTERM handler's KeyboardInterrupt would surface as a SystemError and lose the run's interrupt. Its sums are plain
    float64 loops where the NumPy path uses BLAS (same values up to rounding).
    """
    WT, b, YT = weights
    etas, P, k_b, k_d, phi_max, update, backprop = learning
    truncated = flags[0]
    L = len(b) - 1
    (phase_f, rec_f), (phase_t, rec_t) = phases
    x, counts, seeds = cand
    act, x_act = _active_kernel(x)
    ptr_f, ptr_t = _candidate_ptr(counts, 0, phase_f[0]), _candidate_ptr(counts, phase_f[0], counts.shape[1])
    draws_f = (ptr_f, seeds[0], np.zeros(ptr_f[-1, -1], np.uint8), act, x_act)
    draws_t = (ptr_t, seeds[1], np.zeros(ptr_t[-1, -1], np.uint8), act, x_act)
    work = _work_in(weights, state, truncated)
    sums_f, sums_t = _work_sums(work, b, rec_f), _work_sums(work, b, rec_t)
    pos = _step_loop(weights, work, state[-1], draws_f, phase_f, sums_f, consts, flags)
    pos = _step_loop(weights, work, pos, draws_t, phase_t, sums_t, consts, flags)
    s_sum, V_sum, Va_f, _, n_f, _ = sums_f
    _, _, Va_t, phi_sum, n_t, _ = sums_t
    # ---- window averages (Eqs. (21)-(22)), errors (Eqs. (28), (33), (39)-(40)), L0 and L1 ----
    W_f, W_t = phase_f[2] - phase_f[1], phase_t[2] - phase_t[1]       # window lengths hi - lo
    res, V_f, avg, n_spk = outs
    V_f[:] = V_sum / W_f                                              # V-bar^f per layer
    s = s_sum / W_f                                                   # s-bar per population
    E = np.zeros(V_f.shape)
    for k in range(L):
        lo_f, hi_f, lo_t, hi_t = phase_f[3][k], phase_f[4][k], phase_t[3][k], phase_t[4][k]
        for i in range(b[k].shape[0]):
            a = 0 if lo_f.shape[0] == 1 else i   # one plateau window for all units, or one per unit
            avg[2, k, i] = Va_f[k, i] / (hi_f[a] - lo_f[a])
            avg[3, k, i] = Va_t[k, i] / (hi_t[a] - lo_t[a])
            avg[0, k, i] = _sig(avg[2, k, i])                                                 # Eq. (21)
            avg[1, k, i] = _sig(avg[3, k, i])
            sg = _sig(V_f[k, i])
            E[k, i] = -k_b * phi_max * (avg[1, k, i] - avg[0, k, i]) * (sg * (1.0 - sg))      # Eq. (33)
            if k == 0:
                res[0] += (avg[1, k, i] - avg[0, k, i]) ** 2                                  # Eq. (32)
    for q in range(b[L].shape[0]):
        phi_t = phi_sum[q] / W_t
        sg = _sig(V_f[L, q])
        E[L, q] = -k_d * phi_max * (phi_t - phi_max * sg) * (sg * (1.0 - sg))                 # Eq. (28)
        res[1] += (phi_t - phi_max * sg) ** 2                                                 # Eq. (23)
        if V_f[L, q] > V_f[L, int(res[2])]:
            res[2] = q                           # the prediction: the largest mean output V
    res[3] = np.nan
    # ---- updates from the top down, as the code (output first): the backprop error of layer k uses the
    # new W_(k+1) (the code l.1554-1556) ----
    E_bp = E[L].copy()
    for k in range(L, -1, -1):
        m = b[k].shape[0]
        if k < L:
            E_bp = _backprop_error(WT[k + 1], E_bp, V_f[k, :m], k_b, phi_max)
            if k == 0:
                res[3] = _angle_kernel(E[0, :m], E_bp)
            if backprop:                         # the twin of Fig 7: W_k learns from backprop's error
                E[k, :m] = E_bp
        if update:
            scale = -etas[k] * P[k]
            _rank1_update(WT[k], b[k], scale, E[k], s[k])                                     # Eqs. (29), (35)
            _fix_traces_kernel(work, k, m, WT[k].shape[0], scale, E[k], s[k], pos, draws_t, phase_t[0], truncated)
    _work_out(work, state, truncated)
    n_spk[:] = n_f + n_t
    return pos


@njit(cache=True, nogil=True, inline="always")
def _active_kernel(x):
    """Twin of _active: the inputs with a non-zero rate, and their pixel values (float64)."""
    n_act = 0
    for j in range(x.shape[0]):
        n_act += x[j] != 0
    act, x_act = np.empty(n_act, np.int64), np.empty(n_act)
    a = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            act[a], x_act[a] = j, x[j]
            a += 1
    return act, x_act


@njit(cache=True, nogil=True, inline="always")
def _candidate_ptr(counts, t0, t1):
    """Twin of candidate_ptr(counts[:, t0:t1])."""
    ptr = np.zeros((counts.shape[0], t1 - t0 + 1), np.int64)
    e = 0
    for p in range(counts.shape[0]):
        ptr[p, 0] = e
        for t in range(t0, t1):
            e += counts[p, t]
            ptr[p, t - t0 + 1] = e
    return ptr


@njit(cache=True, nogil=True)
def _test_kernel(weights, cand, phase, rec, consts, flags, V_out):
    """One test phase from a zero state (twin: test_example(jit=False)): the step loop on zero work arrays.
    cand: (x, counts, seed), as _example_kernel's. Fills V_out with the output layer's mean V over the window
    (filled, not returned: see _example_kernel)."""
    b = weights[1]
    L = len(b) - 1
    x, counts, seed = cand
    act, x_act = _active_kernel(x)
    ptr = _candidate_ptr(counts, 0, counts.shape[1])
    draws = (ptr, seed, np.zeros(ptr[-1, -1], np.uint8), act, x_act)
    n_out = b[L].shape[0]
    work = _work_zeros(weights, flags[0], np.zeros(n_out), np.zeros(n_out), np.zeros((10, n_out)),
                       np.zeros(n_out, np.float32))
    sums = _work_sums(work, b, rec)
    _step_loop(weights, work, 0, draws, phase, sums, consts, flags)
    V_out[:] = sums[1][L, :n_out] / (phase[2] - phase[1])


@njit(cache=True, nogil=True, inline="always")
def _work_zeros(weights, truncated, out_L, out_s, n_out_hist, phi_out):
    """Zero work arrays in the layout of _work_in, with the given output arrays."""
    WT, b, _ = weights
    L = len(b) - 1
    n_max = 0
    for k in range(L + 1):
        n_max = max(n_max, b[k].shape[0])
    m_max = max(n_max, WT[0].shape[0])
    F = np.zeros((5, L + 1, n_max), np.float32)
    R = np.zeros((2, L + 1, 10, n_max if truncated else 0), np.float32)
    X = np.zeros((2, L + 1, m_max))
    return F[0], F[1], F[2], F[3], F[4], R[0], R[1], X[0], X[1], out_L, out_s, n_out_hist, phi_out


@njit(cache=True, nogil=True)
def _work_in(weights, state, truncated):
    """Padded work copies of the state's per-layer arrays, and the state's own output arrays:
    (u_L, u_s, a_L, a_s, V) (L + 1, n_max) float32; ring_b, ring_a (L + 1, 10, n_max) float32 (the code's
    kernel; else width 0); x_L, x_s (L + 1, m_max) float64, row p = population p; out_L, out_s,
    n_out_hist, phi_out."""
    b = weights[1]
    u_L, u_s, a_L, a_s, V, ring_b, ring_a, x_L, x_s, out_L, out_s, n_out_hist, phi_out, _ = state
    work = _work_zeros(weights, truncated, out_L, out_s, n_out_hist, phi_out)
    F = (work[0], work[1], work[2], work[3], work[4])
    for k in range(len(b)):
        m = b[k].shape[0]
        for f, src in enumerate((u_L, u_s, a_L, a_s, V)):
            F[f][k, :m] = src[k]
        if truncated:
            work[5][k, :, :m] = ring_b[k]
            work[6][k, :, :m] = ring_a[k]
        work[7][k, :x_L[k].shape[0]] = x_L[k]
        work[8][k, :x_s[k].shape[0]] = x_s[k]
    return work


@njit(cache=True, nogil=True)
def _work_out(work, state, truncated):
    """Copy the work arrays back into the state's arrays."""
    u_L, u_s, a_L, a_s, V, ring_b, ring_a, x_L, x_s, _, _, _, _, _ = state
    F = (work[0], work[1], work[2], work[3], work[4])
    for k in range(len(u_L)):
        m = u_L[k].shape[0]
        for f, dst in enumerate((u_L, u_s, a_L, a_s, V)):
            dst[k][:] = F[f][k, :m]
        if truncated:
            ring_b[k][:] = work[5][k, :, :m]
            ring_a[k][:] = work[6][k, :, :m]
        x_L[k][:] = work[7][k, :x_L[k].shape[0]]
        x_s[k][:] = work[8][k, :x_s[k].shape[0]]


@njit(cache=True, nogil=True)
def _work_sums(work, b, rec):
    """Window sums of one phase on the work layout: s (L + 1, m_max), V and V_a (L + 1, n_max), phi_out,
    spikes per population; and the records."""
    L = len(b) - 1
    return (np.zeros(work[7].shape), np.zeros(work[4].shape), np.zeros(work[4].shape),
            np.zeros(b[L].shape[0]), np.zeros(L + 2, np.int64), rec)


@njit(cache=True, nogil=True)
def _step_loop(weights, work, pos, draws, phase, sums, consts, flags):
    """Step loop of one phase on the work arrays (twin: _phase_numpy, same banners). Returns the new
    ring position. One flat loop, without helpers that take arrays (see the banner above)."""
    WT, b, YT = weights
    u_L, u_s, a_L, a_s, V, ring_b, ring_a, x_L, x_s, out_L, out_s, n_out_hist, phi_out = work
    ptr, seed, acc, act, x_act = draws
    T, lo, hi, lo_a, hi_a, K, E_L, E_s, G, g_E, g_I = phase
    s_sum, V_sum, Va_sum, phi_sum, n_spk, rec = sums
    c, kappa10 = consts
    d_L, d_s, inv, g_l, g_b, g_a, g_d, phi_max, E_E, E_I, dt, I_scale = c
    truncated, spiking_fb, learn, apical, record = flags
    L = len(b) - 1
    paper = spiking_fb and not truncated         # the paper's model: V_a from the apical traces a_L, a_s
    n, b_w, lo_w, hi_w, win_lo, win_hi = _layer_tables(b, lo_a, hi_a)
    inc, V_b, V_a, spk, n_out = _scratch(b, ptr, T)
    n_act = act.shape[0]
    _carry_in(x_L, x_s, s_sum, G)
    for t in range(T):
        # ---- input spikes: thinning, candidate e picks active input a = int(u n_act) and is kept with
        # probability x_a, so the counts are Poisson(phi_max x) (Methods "Training paradigm") ----
        n_s = 0
        for e in range(ptr[0, t], ptr[0, t + 1]):
            w_e = _uniform(seed, e) * n_act
            a = int(w_e)
            keep = w_e - a < x_act[a]            # branch-free compaction: always write, count if kept
            acc[e] = keep
            spk[n_s] = act[a]
            n_s += keep
        n_spk[0] += n_s
        for k in range(L + 1):                   # bottom to top (Methods "Simulation details")
            m = n[k]
            # ---- spikes of population k (input, or hidden layer k - 1) feed layer k: one shared increment
            # W_k[:, j] per spike for both traces (Eq. (11)); four rows per pass over inc, each element
            # summed in spike order as one row at a time would be (same floats, a quarter of the stores) ----
            WTk = WT[k]
            for i in range(m):
                inc[i] = 0.0
            r = 0
            while r + 4 <= n_s:
                j0, j1, j2, j3 = spk[r], spk[r + 1], spk[r + 2], spk[r + 3]
                for i in range(m):
                    inc[i] = inc[i] + WTk[j0, i] + WTk[j1, i] + WTk[j2, i] + WTk[j3, i]
                r += 4
            for r in range(r, n_s):
                j = spk[r]
                for i in range(m):
                    inc[i] += WTk[j, i]
            if learn:                            # each spike's share of s-bar and of the end-of-phase traces
                for r in range(n_s):
                    j = spk[r]
                    s_sum[k, j] += K[t]          # window sum of s (s-bar, Eqs. (28), (33))
                    x_L[k, j] += E_L[t]          # presynaptic traces at the phase end
                    x_s[k, j] += E_s[t]
            if k < L and paper:
                # ---- the paper's hidden layer: basal, apical and soma in one pass (Eqs. (12)-(14)) ----
                for i in range(m):
                    u_L[k, i] = d_L * u_L[k, i] + inc[i]                                # u_L = W x_L
                    u_s[k, i] = d_s * u_s[k, i] + inc[i]                                # u_s = W x_s
                    vb = (u_L[k, i] - u_s[k, i]) * inv + b_w[k, i]                      # Eqs. (12)-(13)
                    va = (a_L[k, i] - a_s[k, i]) * inv                                  # Eqs. (12)-(13)
                    V[k, i] += dt * (-g_l * V[k, i] + g_b * (vb - V[k, i]) + g_a * (va - V[k, i]))  # Eq. (14)
                if record:
                    for i in range(m):
                        V_b[i] = (u_L[k, i] - u_s[k, i]) * inv + b_w[k, i]
                if record or (learn and win_lo[k] <= t < win_hi[k]):   # read by the plateau window, records
                    for i in range(m):
                        V_a[i] = (a_L[k, i] - a_s[k, i]) * inv
            else:
                # ---- basal / output dendrite: V_b = W s + b (Eqs. (13), (18)) ----
                if truncated:                    # the code: s = sum_{q=1..10} kappa(q) n_{t-q+1} (l.1591)
                    for i in range(m):
                        ring_b[k, pos, i] = inc[i]
                    for i in range(m):
                        V_b[i] = b_w[k, i]
                    for q in range(10):
                        slot, kq = (pos - q) % 10, kappa10[q]
                        for i in range(m):
                            V_b[i] += kq * ring_b[k, slot, i]
                else:
                    for i in range(m):
                        u_L[k, i] = d_L * u_L[k, i] + inc[i]                            # u_L = W x_L
                        u_s[k, i] = d_s * u_s[k, i] + inc[i]                            # u_s = W x_s
                        V_b[i] = (u_L[k, i] - u_s[k, i]) * inv + b_w[k, i]              # Eqs. (12)-(13)
                if k < L:
                    # ---- apical: V_a = Y s_out, output spikes up to the previous step (Eq. (13)); computed
                    # where it is read: the soma (g_a > 0), the plateau window, records (else 0: g_a V_a = 0) ----
                    for i in range(m):
                        V_a[i] = 0.0
                    read = apical and (g_a != 0 or record or (learn and win_lo[k] <= t < win_hi[k]))
                    if read and not spiking_fb:      # Fig 7A, rate feedback: V_a = Y phi_out
                        YTk = YT[k]
                        for q in range(phi_out.shape[0]):
                            for i in range(m):
                                V_a[i] += YTk[q, i] * phi_out[q]
                    elif read:                       # the code's kernel: 10 steps of Y n_out (l.1612)
                        for q in range(1, 11):
                            slot, kq = (pos - q) % 10, kappa10[q - 1]
                            for i in range(m):
                                V_a[i] += kq * ring_a[k, slot, i]
                    # ---- soma (Eq. (14)) ----
                    for i in range(m):
                        V[k, i] += dt * (-g_l * V[k, i] + g_b * (V_b[i] - V[k, i]) + g_a * (V_a[i] - V[k, i]))  # Eq. (14)
                else:
                    # ---- output soma with the teaching current, and its rate (Eqs. (17), (19)-(20)) ----
                    for i in range(m):
                        I = I_scale * (g_E[i] * (E_E - V[k, i]) + g_I[i] * (E_I - V[k, i]))   # Eq. (20)
                        V[k, i] += dt * (-g_l * V[k, i] + g_d * (V_b[i] - V[k, i]) + I)        # Eq. (19)
                        V_a[i] = 0.0
                    if apical:                   # the output rates feed back or are learned from
                        for i in range(m):
                            phi_out[i] = phi_max * _sig(np.float64(V[k, i]))                 # Eq. (17)
            if k < L and learn:                  # plateau window (Eq. (21))
                if lo_w.shape[1] == 1:           # one for all units (synchronous plateaus)
                    if lo_w[k, 0] <= t < hi_w[k, 0]:
                        for i in range(m):
                            Va_sum[k, i] += V_a[i]
                else:                            # one per unit (Fig 6-S1)
                    for i in range(m):
                        if lo_w[k, i] <= t < hi_w[k, i]:
                            Va_sum[k, i] += V_a[i]
            # ---- window sums: V, and phi_out (Eq. (6)) ----
            if lo <= t < hi and (learn or k == L):
                for i in range(m):
                    V_sum[k, i] += V[k, i]
                if k == L and apical:
                    for i in range(m):
                        phi_sum[i] += phi_out[i]
            if record:                           # rows V_b, V_a, V (spike counts: row 3)
                r_t = rec[k][t]
                for i in range(m):
                    r_t[0, i], r_t[1, i], r_t[2, i] = V_b[i], V_a[i], V[k, i]
            # ---- spikes by thinning: candidate e picks unit i = int(u m) and is kept iff the fractional
            # part < sigma(V_i), so the counts are Poisson(phi_max sigma(V)) (Eq. (17)) ----
            e_end = ptr[k + 1, t + 1] if (k < L or apical) else ptr[k + 1, t]   # no output spikes if unused
            n_s = 0
            for e in range(ptr[k + 1, t], e_end):
                w_e = _uniform(seed, e) * m
                i = int(w_e)
                keep = w_e - i < _sig32(V[k, i])
                acc[e] = keep
                spk[n_s] = i
                n_s += keep
            n_spk[k + 1] += n_s
            if record:
                for r in range(n_s):
                    rec[k][t, 3, spk[r]] += 1.0
        # ---- output spikes reach the apical dendrites from the next step on ----
        for q in range(n_out.shape[0]):
            n_out[q] = 0.0
        for r in range(n_s):
            n_out[spk[r]] += 1.0
        for q in range(n_out.shape[0]):
            out_L[q] = d_L * (out_L[q] + n_out[q])
            out_s[q] = d_s * (out_s[q] + n_out[q])
            n_out_hist[pos, q] = n_out[q]
        for k in range(L if apical else 0):      # Y n_out into the traces (or ring slot) of hidden layer k
            YTk = YT[k]
            m = n[k]
            for i in range(m):
                V_a[i] = 0.0
            for q in range(n_out.shape[0]):
                if n_out[q] > 0:
                    f = np.float32(n_out[q])
                    for i in range(m):
                        V_a[i] += f * YTk[q, i]
            if truncated:
                for i in range(m):
                    ring_a[k, pos, i] = V_a[i]
            else:
                for i in range(m):
                    a_L[k, i] = d_L * (a_L[k, i] + V_a[i])
                for i in range(m):
                    a_s[k, i] = d_s * (a_s[k, i] + V_a[i])
        pos = (pos + 1) % 10
    _flush(x_L, x_s)
    return pos


@njit(cache=True, nogil=True, inline="always")
def _layer_tables(b, lo_a, hi_a):
    """Layer sizes n, b padded to (L + 1, n_max), and the plateau windows padded to (L, 1) (synchronous)
    or (L, n_max) (one per unit), and per layer the first and end step of any unit's window."""
    L = len(b) - 1
    n = np.zeros(L + 1, np.int64)
    for k in range(L + 1):
        n[k] = b[k].shape[0]
    b_w = np.zeros((L + 1, n.max()), np.float32)
    for k in range(L + 1):
        b_w[k, :n[k]] = b[k]
    width = 1 if lo_a[0].shape[0] == 1 else n.max()
    lo_w = np.zeros((max(L, 1), width), np.int64)
    hi_w = np.zeros((max(L, 1), width), np.int64)
    win_lo, win_hi = np.zeros(L + 1, np.int64), np.zeros(L + 1, np.int64)   # steps in any unit's window
    for k in range(L):
        lo_w[k, :lo_a[k].shape[0]] = lo_a[k]
        hi_w[k, :hi_a[k].shape[0]] = hi_a[k]
        win_lo[k], win_hi[k] = lo_a[k].min(), hi_a[k].max()
    return n, b_w, lo_w, hi_w, win_lo, win_hi


@njit(cache=True, nogil=True, inline="always")
def _scratch(b, ptr, T):
    """Work arrays of the step loop: the basal increment inc, V_b and V_a of the current layer
    (float32, as wide as the widest layer), the spikes of one population in one step (indices) and
    the output spike counts of one step."""
    n_max = 0
    for k in range(len(b)):
        n_max = max(n_max, b[k].shape[0])
    n_c = 1                                      # most candidates in one step of one population
    for p in range(ptr.shape[0]):
        for t in range(T):
            n_c = max(n_c, ptr[p, t + 1] - ptr[p, t])
    return (np.zeros(n_max, np.float32), np.zeros(n_max, np.float32), np.zeros(n_max, np.float32),
            np.zeros(n_c, np.int64), np.zeros(b[len(b) - 1].shape[0]))


@njit(cache=True, nogil=True, inline="always")
def _carry_in(x_L, x_s, s_sum, G):
    """Presynaptic traces carried in from before the phase: their share of the window sums of s and of
    the traces at the phase end (_window_tables; exact kernel, G = 0 for truncated10)."""
    for p in range(x_L.shape[0]):
        for j in range(x_L.shape[1]):
            s_sum[p, j] = x_L[p, j] * G[0] - x_s[p, j] * G[1]
            x_L[p, j] = x_L[p, j] * G[2]
            x_s[p, j] = x_s[p, j] * G[3]


@njit(cache=True, nogil=True, inline="always")
def _flush(x_L, x_s):
    """Presynaptic traces below 1e-20 of one spike set to 0: invisible in float32, and no denormals."""
    for p in range(x_L.shape[0]):
        for j in range(x_L.shape[1]):
            x_L[p, j] = x_L[p, j] if x_L[p, j] >= 1e-20 else 0.0
            x_s[p, j] = x_s[p, j] if x_s[p, j] >= 1e-20 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _backprop_error(WT, E_up, V_f, k_b, phi_max):
    """Backprop's error of a hidden layer: (W^T E_up) k_b phi_max sigma'(V-bar^f) (the code l.1554)."""
    m = WT.shape[0]
    E_bp = np.zeros(m)
    for i in range(m):
        acc = 0.0
        for q in range(WT.shape[1]):
            acc += WT[i, q] * E_up[q]
        sg = _sig(V_f[i])
        E_bp[i] = acc * k_b * phi_max * (sg * (1.0 - sg))
    return E_bp


@njit(cache=True, nogil=True, inline="always")
def _angle_kernel(a, b):
    """Twin of _angle: angle in degrees between two vectors (nan if one is zero)."""
    ab, aa, bb = 0.0, 0.0, 0.0
    for i in range(a.shape[0]):
        ab += a[i] * b[i]
        aa += a[i] * a[i]
        bb += b[i] * b[i]
    norms = math.sqrt(aa * bb)
    if norms == 0:
        return np.nan
    return math.degrees(math.acos(min(1.0, max(-1.0, ab / norms))))


@njit(cache=True, nogil=True, inline="always")
def _rank1_update(WT, b, scale, E, s):
    """Twin of update_weights: W += scale E s^T on W^T (rows j, skipping s_j = 0), b += scale E, float32."""
    m = b.shape[0]
    E32 = np.empty(m, np.float32)
    for i in range(m):
        E32[i] = E[i]
    for j in range(WT.shape[0]):
        if s[j] != 0.0:
            f = np.float32(scale * s[j])
            for i in range(m):
                WT[j, i] += f * E32[i]
    for i in range(m):
        b[i] += np.float32(scale * E[i])


@njit(cache=True, nogil=True, inline="always")
def _fix_traces_kernel(work, k, m, n_pre, scale, E, s, pos, draws, T, truncated):
    """Twin of _fix_traces: after W_k += scale E s^T (m units, n_pre inputs), postsynaptic traces
    W_k(new) x (exact kernel) or the ring of the target phase's last 10 increments W_k(new) n (the code's
    kernel)."""
    u_L, u_s, _, _, _, ring_b, _, x_L, x_s, _, _, _, _ = work
    if not truncated:    # u = W x: W(new) x = u + scale E (s . x)
        dot_L, dot_s = 0.0, 0.0
        for j in range(n_pre):
            dot_L += s[j] * x_L[k, j]
            dot_s += s[j] * x_s[k, j]
        for i in range(m):
            u_L[k, i] += np.float32(scale * E[i] * dot_L)
            u_s[k, i] += np.float32(scale * E[i] * dot_s)
        return
    ptr, seed, acc, act, _ = draws
    if k == 0:
        n_pre = act.shape[0]                     # input candidates pick one of the active inputs
    for r in range(10):                          # ring slot of step T-10+r is (pos - 10 + r) % 10
        t = T - 10 + r
        total = 0.0                              # s summed over the spikes of population k at step t
        for e in range(ptr[k, t], ptr[k, t + 1]):
            if acc[e]:
                j = int(_uniform(seed, e) * n_pre)
                total += s[act[j]] if k == 0 else s[j]
        slot = (pos - 10 + r) % 10
        for i in range(m):
            ring_b[k, slot, i] += np.float32(scale * E[i] * total)


@njit(cache=True, nogil=True)
def _rank1_kernel(WT, scale, E, s):
    """W += scale E s^T on W^T (rows j), skipping inputs with s_j = 0 (twin: update_weights)."""
    for j in range(WT.shape[0]):
        if s[j] != 0.0:
            f = np.float32(scale * s[j])
            w = WT[j]
            for i in range(WT.shape[1]):
                w[i] += f * E[i]


@njit(cache=True, nogil=True)
def _rate_kernel(WT, b, YT, X, y, c, etas, res):
    """Rate-mode training over the rows of X in order (twin: rate_train_example)."""
    phi_max, k_b, k_d, g_l, g_d, E_E, E_I, P0, P1 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    L = len(b) - 1
    n_out = b[L].shape[0]
    n_max = X.shape[1]
    for k in range(L + 1):
        n_max = max(n_max, b[k].shape[0])
    s = np.zeros((L + 2, n_max))          # s[k]: input to layer k (rates); s[L+1]: output rates
    V = np.zeros((L + 1, n_max))
    E = np.zeros(n_max)
    phi_t = np.zeros(n_out)
    for ex in range(X.shape[0]):
        n_in = X.shape[1]
        for j in range(n_in):
            s[0, j] = phi_max * X[ex, j]
        for k in range(L + 1):
            m = b[k].shape[0]
            kk = k_d if k == L else k_b
            for i in range(m):
                V[k, i] = b[k][i]
            for j in range(WT[k].shape[0]):                     # only active inputs contribute
                if s[k, j] != 0.0:
                    w = WT[k][j]
                    for i in range(m):
                        V[k, i] += w[i] * s[k, j]               # Eqs. (13), (18)
            for i in range(m):
                V[k, i] *= kk                                   # Eqs. (26), (34)
                s[k + 1, i] = phi_max * _sig(V[k, i])           # Eq. (17)
        lab = y[ex]
        L1 = 0.0
        best = 0
        for q in range(n_out):
            gE = 1.0 if q == lab else 0.0
            Vt = (g_d * V[L, q] / k_d + gE * E_E + (1.0 - gE) * E_I) / (g_l + g_d + 1.0)
            phi_t[q] = phi_max * _sig(Vt)                       # Eq. (6)
            L1 += (phi_t[q] - s[L + 1, q]) ** 2                 # Eq. (23)
            if V[L, q] > V[L, best]:
                best = q
        res[ex, 1] = L1
        res[ex, 2] = best
        # ---- output layer update (Eqs. (28)-(29)) ----
        for q in range(n_out):
            sg = _sig(V[L, q])
            E[q] = -k_d * phi_max * (phi_t[q] - phi_max * sg) * sg * (1.0 - sg)   # Eq. (28)
        _rank1_kernel(WT[L], -etas[L] * P1, E[:n_out], s[L])            # Eq. (29)
        for q in range(n_out):
            b[L][q] -= etas[L] * P1 * E[q]
        # ---- hidden layers (Eqs. (33), (35), (39)-(41)): plateaus from fed-back rates ----
        for k in range(L - 1, -1, -1):
            m = b[k].shape[0]
            L0 = 0.0
            for i in range(m):
                Af = 0.0
                At = 0.0
                for q in range(n_out):
                    Af += YT[k][q, i] * s[L + 1, q]
                    At += YT[k][q, i] * phi_t[q]
                da = _sig(At) - _sig(Af)                            # alpha^t - alpha^f (Eq. (21))
                L0 += da * da
                sg = _sig(V[k, i])
                E[i] = -k_b * phi_max * da * sg * (1.0 - sg)        # Eq. (33)
            if k == 0:
                res[ex, 0] = L0
            _rank1_kernel(WT[k], -etas[k] * P0, E[:m], s[k])            # Eq. (35)
            for i in range(m):
                b[k][i] -= etas[k] * P0 * E[i]
