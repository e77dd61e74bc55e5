"""baselines.py -- the learning rules the segregated-dendrite network is compared with.

Every rule trains the same multilayer perceptron and shares one skeleton (forward pass, output error,
layer gradients, optimizer step). The rules differ only in `hidden_errors`: how the output error is sent
back to the hidden layers. Reading two rules side by side shows that one place.

    bp      backprop. Rumelhart, Hinton & Williams (1986); written out as in Nielsen, "Neural Networks and
            Deep Learning", ch. 2 (network.py `backprop`).
    fa      feedback alignment. Lillicrap, Cownden, Tweed & Akerman (2016), Nat. Commun. 7:13276.
    dfa     direct feedback alignment. Noekland (2016), NeurIPS, arXiv:1609.01596.
    sign    sign symmetry (uniform sign-concordant feedback, uSF). Liao, Leibo & Poggio (2016), AAAI,
            arXiv:1510.05067; scaling as in BioTorch (jsalbert/biotorch, layers/usf).
    tp      target propagation through learned inverses g_l.
    dtp     difference target propagation. Lee, Zhang, Fischer & Bengio (2015), ECML-PKDD, arXiv:1412.7525.
    sdtp    simplified DTP: no gradient at the top. Bartunov et al. (2018), NeurIPS.
    aosdtp  SDTP with auxiliary random output units. Bartunov et al. (2018).

Notation follows baselines.md section 1: a_l = h_(l-1) W_l^T + b_l, h_l = f(a_l), output y = h_L,
e = dLoss/da_L, and every rule updates dW_l = delta_l^T h_(l-1), db_l = sum of delta_l over the batch.
The target-propagation rules (section 4 of baselines.md) fit the same mould: their delta_l is the gradient
of the local loss 1/2 ||h_l - h_hat_l||^2 with respect to a_l, and they also train inverses g_l.
Equation tags "(b.md 4.1)" point to the section of baselines.md that states the equation and its source.

Arrays are batch-first rows: x (B, n_in), h_l (B, n_l), delta_l (B, n_l). Weights W_l are (n_l, n_(l-1)),
the papers' orientation. Python lists are 0-based: params["W"][l - 1] is W_l, cache["h"][l] is h_l.
No I/O here: experiments.py loads data, loops over minibatches, prints and saves.
Example: python experiments.py --train dtp --dataset mnist --hidden 256 256 256 256 256 --activation tanh
"""
from collections import namedtuple
from dataclasses import dataclass, replace

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu")
OUTPUTS = {"ce": ("softmax",), "mse": ("sigmoid", "linear")}   # allowed output units for each loss
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")


@dataclass(frozen=True)
class Config:
    """Hyperparameters of one baseline run. Defaults: a 784-500-10 ReLU MLP, softmax + CE, Adam."""
    sizes: tuple = (784, 500, 10)   # layer widths, input first
    activation: str = "relu"        # hidden units: sigmoid | tanh | relu
    loss: str = "ce"                # ce (softmax + cross-entropy) | mse (L = 1/2 ||y - t||^2)
    output: str = "softmax"         # output units: softmax (ce) | sigmoid or linear (mse)
    init: str = "glorot"            # glorot: U(+-sqrt(6 / (fan_in + fan_out))) | he: N(0, 2 / fan_in)
    optimizer: str = "adam"         # sgd | momentum | adam | rmsprop
    lr: float = 1e-3                # learning rate (step size)
    batch: int = 100                # examples per minibatch
    momentum: float = 0.9           # momentum coefficient (momentum)
    beta1: float = 0.9              # first-moment decay (adam)
    beta2: float = 0.999            # second-moment decay (adam); squared-gradient decay (rmsprop)
    eps: float = 1e-8               # denominator guard (adam, rmsprop)
    dtype: str = "float32"          # float32 for training, float64 for gradient checks
    # Target-propagation family only (tp, dtp, sdtp, aosdtp); baselines.md 4.1-4.2.
    alpha: float = 0.3277           # step size of the top target h_L-1 - alpha dL/dh_L-1 (tp, dtp); Lee's
                                    #   code 0.3277 with RMSprop; Bartunov searched [0.01, 0.2]
    sigma: float = 0.3598           # std of the noise added to h_(l-1) when training g_l; Lee's code
                                    #   0.3598; Bartunov searched [0.01, 0.3]
    lr_inv: float = 1e-4            # learning rate of the inverses g_l (same optimizer as the forward
                                    #   weights); Lee RMSprop 5.011e-3; Bartunov Adam range [1e-5, 3e-4]
    schedule: str = "alternating"   # alternating: a phase of inverse steps, then one of forward steps
                                    #   (Lee's schedule); parallel: both on every minibatch (Bartunov)
    phase_steps: int = 500          # minibatches per phase of the alternating schedule; 500 = one epoch
                                    #   of 50,000 MNIST images at batch 100 (one epoch each, Lee/Bartunov)
    n_aux: int = 512                # auxiliary random output units of aosdtp; Bartunov 2018

    def __post_init__(self):
        if len(self.sizes) < 2 or any(int(n) != n or n <= 0 for n in self.sizes):
            raise ValueError(f"sizes={self.sizes}: every layer size must be a positive integer "
                             "(e.g. --hidden 500 gives sizes (784, 500, 10))")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: choose one of {ACTIVATIONS}")
        if self.loss not in OUTPUTS:
            raise ValueError(f"loss={self.loss!r}: choose one of {tuple(OUTPUTS)}")
        if self.output not in OUTPUTS[self.loss]:
            raise ValueError(f"output={self.output!r} does not go with loss={self.loss!r}: "
                             f"use one of {OUTPUTS[self.loss]}")
        if self.init not in ("glorot", "he"):
            raise ValueError(f"init={self.init!r}: choose 'glorot' or 'he'")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: choose one of {OPTIMIZERS}")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: the learning rate must be positive (e.g. --lr 1e-3)")
        if int(self.batch) != self.batch or self.batch <= 0:
            raise ValueError(f"batch={self.batch}: the minibatch size must be a positive integer")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: choose 'float32' or 'float64'")
        if not self.alpha > 0 or not self.lr_inv > 0:
            raise ValueError(f"alpha={self.alpha}, lr_inv={self.lr_inv}: the top-target step alpha and "
                             "the inverse learning rate lr_inv must be positive (e.g. --alpha 0.1)")
        if not self.sigma >= 0:
            raise ValueError(f"sigma={self.sigma}: the inverse-training noise std must be >= 0")
        if self.schedule not in ("alternating", "parallel"):
            raise ValueError(f"schedule={self.schedule!r}: choose 'alternating' or 'parallel'")
        if int(self.phase_steps) != self.phase_steps or self.phase_steps <= 0:
            raise ValueError(f"phase_steps={self.phase_steps}: minibatches per alternating phase must be "
                             "a positive integer")
        if int(self.n_aux) != self.n_aux or self.n_aux < 0:
            raise ValueError(f"n_aux={self.n_aux}: the number of auxiliary outputs must be >= 0")


# ------------------------------------------------------------------------------------------------
# Units: f(a) and f'(a) written in terms of h = f(a), which the forward pass already holds.

def sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))   # = 1 / (1 + exp(-a)), without overflow warnings


def act(name, a):
    """Hidden-unit nonlinearity f(a)."""
    if name == "sigmoid":
        return sigmoid(a)
    if name == "tanh":
        return np.tanh(a)
    return np.maximum(a, 0)


def dact(name, h):
    """f'(a) from h = f(a)."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return (h > 0).astype(h.dtype)


def softmax(a):
    z = np.exp(a - a.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def output_units(cfg, a):
    if cfg.output == "softmax":
        return softmax(a)
    return sigmoid(a) if cfg.output == "sigmoid" else a


def one_hot(y, n, dtype=np.float32):
    t = np.zeros((len(y), n), dtype)
    t[np.arange(len(y)), y] = 1
    return t


def loss(cfg, y, t):
    """Mean loss over the batch: cross-entropy -sum t log y, or squared error 1/2 ||y - t||^2."""
    if cfg.loss == "ce":
        return float(-np.mean(np.sum(t * np.log(np.maximum(y, 1e-30)), axis=1)))
    return float(0.5 * np.mean(np.sum((y - t) ** 2, axis=1)))


# ------------------------------------------------------------------------------------------------
# The shared skeleton (style rule 11): init, forward, output error, hidden errors, gradients, update.

def init(sizes, cfg, rng):
    """Weights W_l (n_l, n_(l-1)) and biases b_l (n_l,), layer by layer; biases start at zero."""
    W, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if cfg.init == "glorot":
            r = np.sqrt(6.0 / (n_in + n_out))
            W.append(rng.uniform(-r, r, size=(n_out, n_in)).astype(cfg.dtype))
        else:
            W.append((rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(cfg.dtype))
        b.append(np.zeros(n_out, cfg.dtype))
    return {"W": W, "b": b}


def forward(params, x, cfg):
    """Activations of every layer: cache["h"] = [x, h_1, ..., h_L = y]."""
    h = [x]
    n_layers = len(params["W"])
    for l, (W, b) in enumerate(zip(params["W"], params["b"])):
        a = h[-1] @ W.T + b                                  # (B, n_l)   a_l = h_(l-1) W_l^T + b_l
        h.append(output_units(cfg, a) if l == n_layers - 1 else act(cfg.activation, a))
    return {"h": h}


def output_error(cache, t, cfg):
    """e = dL/da_L for the whole batch, divided by the batch size (the loss is a batch mean)."""
    y = cache["h"][-1]
    e = y - t                                                # softmax + CE, and linear + MSE
    if cfg.output == "sigmoid":
        e = e * y * (1 - y)                                  # sigmoid + MSE: (y - t) f'(a_L)
    return e / len(y)                                        # (B, n_out)


def bp_hidden_errors(params, cache, e, cfg):
    """Backprop: delta_l = (delta_(l+1) W_(l+1)) * f'(a_l), from the top hidden layer down."""
    deltas = [e]
    for l in range(len(params["W"]) - 1, 0, -1):
        back = deltas[0] @ params["W"][l]                    # BP: exact weight transport (B, n_l)
        deltas.insert(0, back * dact(cfg.activation, cache["h"][l]))
    return deltas                                            # [delta_1, ..., delta_L = e]


def gradients(cache, deltas):
    """dW_l = delta_l^T h_(l-1), db_l = sum over the batch of delta_l (same for every rule)."""
    dW = [d.T @ h for d, h in zip(deltas, cache["h"][:-1])]   # (n_l, n_(l-1))
    db = [d.sum(axis=0) for d in deltas]                      # (n_l,)
    return {"W": dW, "b": db}


def init_optimizer(params):
    """Per-parameter optimizer state: first and second moments, a scratch buffer, a step counter."""
    def zeros():
        return {k: [np.zeros_like(p) for p in params[k]] for k in ("W", "b")}
    return {"m": zeros(), "v": zeros(), "s": zeros(), "t": 0}


def update(params, grads, opt, cfg):
    """One optimizer step, in place, on every W_l and b_l.

    The arithmetic goes through the scratch buffer s (`out=`), so that a step allocates no temporaries:
    on a 784-500-10 MLP the textbook expressions made the update 65 % of a training step."""
    opt["t"] += 1
    t = opt["t"]
    for k in ("W", "b"):
        for p, g, m, v, s in zip(params[k], grads[k], opt["m"][k], opt["v"][k], opt["s"][k]):
            if cfg.optimizer == "sgd":                        # p <- p - lr g
                np.multiply(g, cfg.lr, out=s)
                p -= s
            elif cfg.optimizer == "momentum":                 # heavy ball: m <- mu m - lr g; p <- p + m
                m *= cfg.momentum
                np.multiply(g, cfg.lr, out=s)
                m -= s
                p += m
            elif cfg.optimizer == "rmsprop":                  # Tieleman & Hinton (2012)
                v *= cfg.beta2                                # v <- rho v + (1 - rho) g^2
                np.multiply(g, g, out=s)
                s *= 1 - cfg.beta2
                v += s
                np.sqrt(v, out=s)                             # p <- p - lr g / (sqrt(v) + eps)
                s += cfg.eps
                np.divide(g, s, out=s)
                s *= cfg.lr
                p -= s
            else:                                             # adam, Kingma & Ba (2015), Algorithm 1
                m *= cfg.beta1                                # m <- b1 m + (1 - b1) g
                np.multiply(g, 1 - cfg.beta1, out=s)
                m += s
                v *= cfg.beta2                                # v <- b2 v + (1 - b2) g^2
                np.multiply(g, g, out=s)
                s *= 1 - cfg.beta2
                v += s
                # p <- p - lr m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t) and
                # v_hat = v / (1 - b2^t), rearranged so that only scalars carry the bias corrections
                c = np.sqrt(1 - cfg.beta2 ** t)
                np.sqrt(v, out=s)
                s += cfg.eps * c
                np.divide(m, s, out=s)
                s *= cfg.lr * c / (1 - cfg.beta1 ** t)
                p -= s


# ------------------------------------------------------------------------------------------------
# The rules. Each is a Rule(init, hidden_errors, extra_update):
#   init(params, cfg, rng) -> params      adds the rule's own arrays (feedback matrices, inverses)
#   hidden_errors(params, cache, e, cfg)  -> [delta_1, ..., delta_L = e], one row per example
#   extra_update(params, opt, cache, cfg) trains anything besides W and b (the inverses g_l), or None
# Feedback matrices are keyed by the hidden layer l = 1..L-1 that receives the error.

Rule = namedtuple("Rule", "init hidden_errors extra_update", defaults=(None,))


def no_extra_init(params, cfg, rng):
    return params


def uniform(rng, r, shape, cfg):
    return rng.uniform(-r, r, size=shape).astype(cfg.dtype)


# ------------------------------------------------------------------------------------------------
# BP: delta_l = (delta_(l+1) W_(l+1)) * f'(a_l)  -- bp_hidden_errors in the skeleton above.


# ------------------------------------------------------------------------------------------------
# FA (Lillicrap 2016): a fixed random B_(l+1) in place of W_(l+1) (b.md 2.1).

def fa_init(params, cfg, rng):
    """B_(l+1) ~ U(+-1/sqrt(n_l)), the shape of W_(l+1) (n_(l+1), n_l); Noekland's dfa-torch Linear.lua."""
    W = params["W"]
    params["B"] = {l: uniform(rng, 1 / np.sqrt(W[l].shape[1]), W[l].shape, cfg) for l in range(1, len(W))}
    return params


def fa_hidden_errors(params, cache, e, cfg):
    """FA: delta_l = (delta_(l+1) B_(l+1)) * f'(a_l); B fixed and random (b.md 2.1)."""
    deltas = [e]
    for l in range(len(params["W"]) - 1, 0, -1):
        back = deltas[0] @ params["B"][l]                    # FA: fixed random B_(l+1), shape of W_(l+1)
        deltas.insert(0, back * dact(cfg.activation, cache["h"][l]))
    return deltas


# ------------------------------------------------------------------------------------------------
# DFA (Noekland 2016): the output error e goes straight to every hidden layer through a fixed D_l.

def dfa_init(params, cfg, rng):
    """D_l ~ U(+-1/sqrt(n_l)), shape (n_out, n_l); Noekland's dfa-torch ErrorFeedback.lua (b.md 2.2)."""
    W, n_out = params["W"], params["W"][-1].shape[0]
    params["D"] = {l: uniform(rng, 1 / np.sqrt(W[l].shape[1]), (n_out, W[l].shape[1]), cfg)
                   for l in range(1, len(W))}
    return params


def dfa_hidden_errors(params, cache, e, cfg):
    """DFA: delta_l = (e D_l) * f'(a_l) for every hidden layer; nothing passes between hidden layers."""
    deltas = [e]
    for l in range(len(params["W"]) - 1, 0, -1):
        back = e @ params["D"][l]                            # DFA: fixed random D_l (n_out, n_l), from e
        deltas.insert(0, back * dact(cfg.activation, cache["h"][l]))
    return deltas


# ------------------------------------------------------------------------------------------------
# Sign symmetry, uSF (Liao 2016): the feedback shares only the signs of W_(l+1) (b.md 3.1).

def sign_feedback(W):
    """sign(W) times the Glorot-normal std sqrt(2 / (fan_in + fan_out)), BioTorch's uSF scaling.

    With this scale the feedback equals W wherever |W_ij| = sqrt(2 / (fan_in + fan_out)).
    """
    return np.sign(W) * np.asarray(np.sqrt(2.0 / sum(W.shape)), W.dtype)


def sign_hidden_errors(params, cache, e, cfg):
    """Sign symmetry: delta_l = (delta_(l+1) sign(W_(l+1)) s) * f'(a_l); follows W's signs as W learns."""
    deltas = [e]
    for l in range(len(params["W"]) - 1, 0, -1):
        back = deltas[0] @ sign_feedback(params["W"][l])     # uSF: signs of W_(l+1), fixed magnitude
        deltas.insert(0, back * dact(cfg.activation, cache["h"][l]))
    return deltas


# ------------------------------------------------------------------------------------------------
# Target propagation, shared pieces (b.md 4.1). Layer l < L gets a target h_hat_l and learns from its local
# loss 1/2 ||h_l - h_hat_l||^2, whose gradient with respect to a_l is delta_l = (h_l - h_hat_l) * f'(a_l):
# only targets cross layers, never gradients. Targets travel down through learned approximate inverses
#   g_l(h_l) = f(h_l V_l^T + c_l) ~ h_(l-1),   V_l (n_(l-1), n_l), c_l (n_(l-1),),   keyed by l,
# trained on their own loss (inverse_loss) with their own optimizer state, on the schedule `phases`.

def inverse_init(params, cfg, rng, layers):
    """Glorot-uniform V_l and zero c_l for the inverses g_l, l in `layers` (paper numbering)."""
    W = params["W"]
    if len(W) < 2:
        raise ValueError(f"sizes={cfg.sizes}: target propagation needs at least one hidden layer "
                         "(e.g. --hidden 256)")
    params["V"], params["c"] = {}, {}
    for l in layers:
        n_prev, n_l = W[l - 1].shape[1], W[l - 1].shape[0]
        if l == len(W) and "A" in params:
            n_l += params["A"].shape[0]                      # aosdtp: g_L reads [y, z]
        params["V"][l] = uniform(rng, np.sqrt(6.0 / (n_prev + n_l)), (n_prev, n_l), cfg)
        params["c"][l] = np.zeros(n_prev, cfg.dtype)
    return params


def inverses(params):
    """The inverses as {"W": [V_l...], "b": [c_l...]}: views that `update` can step in place."""
    return {"W": list(params["V"].values()), "b": list(params["c"].values())}


def g(params, l, h_l, cfg):
    """Approximate inverse of layer l: g_l(h_l) = f(h_l V_l^T + c_l) ~ h_(l-1) (b.md 4.1)."""
    return act(cfg.activation, h_l @ params["V"][l].T + params["c"][l])      # (B, n_(l-1))


def layer(params, l, h_prev, cfg):
    """f_l(h_(l-1)), layer l alone; aosdtp's top layer also returns its auxiliary units, [y, z]."""
    a = h_prev @ params["W"][l - 1].T + params["b"][l - 1]
    if l < len(params["W"]):
        return act(cfg.activation, a)
    y = output_units(cfg, a)
    return np.hstack([y, aux_units(params, h_prev, cfg)]) if "A" in params else y


def target_errors(cache, h_hat, e, cfg):
    """delta_l = (h_l - h_hat_l) * f'(a_l) / B for l = 1..L-1 (local losses, batch mean); delta_L = e."""
    h = cache["h"]
    return [(h[l] - h_hat[l]) * dact(cfg.activation, h[l]) / len(e) for l in range(1, len(h) - 1)] + [e]


def inverse_loss(params, l, h_prev, eps, cfg, denoise):
    """Inverse loss of g_l on one batch, and its gradient with respect to V_l and c_l (b.md 4.1).

    noise-preserving (Lee 2015):   1/2 ||h~ - g_l(f_l(h~))||^2,  h~ = h_(l-1) + eps
    denoising (Bartunov 2018):     1/2 ||h  - g_l(f_l(h~))||^2
    Batch mean; f_l is held fixed. Returns (loss, dV like V_l, dc like c_l).
    """
    h_tilde = h_prev + eps
    u = layer(params, l, h_tilde, cfg)                       # (B, n_l)      f_l(h~_(l-1))
    r = g(params, l, u, cfg)                                 # (B, n_(l-1))  g_l(f_l(h~_(l-1)))
    diff = r - (h_prev if denoise else h_tilde)
    d = diff * dact(cfg.activation, r) / len(r)              # dL_inv / d(input of g_l's units)
    return float(0.5 * np.mean(np.sum(diff * diff, axis=1))), d.T @ u, d.sum(axis=0)


def train_inverses(params, opt, cache, cfg, denoise):
    """One optimizer step (learning rate lr_inv) on every g_l, with fresh noise eps ~ N(0, sigma^2)."""
    h, grads = cache["h"], {"W": [], "b": []}
    for l in params["V"]:
        eps = cfg.sigma * opt["rng"].standard_normal(h[l - 1].shape, dtype=cfg.dtype)
        _, dV, dc = inverse_loss(params, l, h[l - 1], eps, cfg, denoise)
        grads["W"].append(dV)
        grads["b"].append(dc)
    update(inverses(params), grads, opt["inv"], replace(cfg, lr=cfg.lr_inv))


def train_noisy_inverses(params, opt, cache, cfg):
    return train_inverses(params, opt, cache, cfg, denoise=False)   # tp, dtp (Lee 2015)


def train_denoising_inverses(params, opt, cache, cfg):
    return train_inverses(params, opt, cache, cfg, denoise=True)    # sdtp, aosdtp (Bartunov 2018)


def phases(opt, cfg):
    """(train the forward weights?, train the inverses?) for the next minibatch (b.md 4.1, schedules)."""
    if cfg.schedule == "parallel":
        return True, True
    inverse_turn = opt["steps"] // cfg.phase_steps % 2 == 0  # alternating, inverses first (Lee's code)
    return not inverse_turn, inverse_turn


# ------------------------------------------------------------------------------------------------
# TP: the top hidden target is one gradient step, lower targets go through the inverses alone.
# Failure mode worth seeing: the lower targets ignore h_l, so any error of an inverse pulls every example
# towards the same reconstruction; on the 8x8 digits (64-32x3-10 tanh) the hidden units then stop varying
# across examples and the network stays near chance. The difference correction of DTP removes this.

def tp_init(params, cfg, rng):
    """Inverses g_l for l = 2..L-1 (tp, dtp): the top target needs no g_L."""
    return inverse_init(params, cfg, rng, range(2, len(params["W"])))


def gradient_step_target(params, cache, e, cfg):
    """h_hat_(L-1) = h_(L-1) - alpha dL/dh_(L-1), per example (Lee 2015; b.md 4.1)."""
    L = len(params["W"])
    return cache["h"][L - 1] - cfg.alpha * (len(e) * e) @ params["W"][L - 1]   # len(e): undo the batch mean


def tp_hidden_errors(params, cache, e, cfg):
    """TP: h_hat_l = g_(l+1)(h_hat_(l+1)) below the gradient-step target; deltas from the local losses."""
    L = len(params["W"])
    h_hat = {L - 1: gradient_step_target(params, cache, e, cfg)}
    for l in range(L - 2, 0, -1):
        h_hat[l] = g(params, l + 1, h_hat[l + 1], cfg)                             # TP: inverse only
    return target_errors(cache, h_hat, e, cfg)


# ------------------------------------------------------------------------------------------------
# DTP (Lee 2015): as TP, plus the difference correction h_l - g_(l+1)(h_(l+1)), which cancels the
# inverse's reconstruction error: if h_hat_(l+1) = h_(l+1), then h_hat_l = h_l exactly.

def dtp_hidden_errors(params, cache, e, cfg):
    """DTP: h_hat_l = h_l - g_(l+1)(h_(l+1)) + g_(l+1)(h_hat_(l+1)) below the gradient-step target."""
    h, L = cache["h"], len(params["W"])
    h_hat = {L - 1: gradient_step_target(params, cache, e, cfg)}
    for l in range(L - 2, 0, -1):
        h_hat[l] = h[l] - g(params, l + 1, h[l + 1], cfg) + g(params, l + 1, h_hat[l + 1], cfg)  # DTP
    return target_errors(cache, h_hat, e, cfg)


# ------------------------------------------------------------------------------------------------
# SDTP (Bartunov 2018): no gradient anywhere. The output target is the label itself, and the penultimate
# target goes through a learned inverse of the output layer, g_L, with the same difference correction.

def sdtp_init(params, cfg, rng):
    """Inverses g_l for l = 2..L, g_L included (sdtp, aosdtp)."""
    if cfg.output == "sigmoid":
        raise ValueError("output='sigmoid': sdtp and aosdtp take the label as the output target, which "
                         "needs --loss ce (softmax) or --output linear")
    return inverse_init(params, cfg, rng, range(2, len(params["W"]) + 1))


def label_target(cache, e):
    """h_hat_L = argmin L(h_L): the output at which e vanishes, y - B e (= t for softmax + CE)."""
    return cache["h"][-1] - len(e) * e


def sdtp_hidden_errors(params, cache, e, cfg):
    """SDTP: h_hat_L = t, then h_hat_l = h_l - g_(l+1)(h_(l+1)) + g_(l+1)(h_hat_(l+1)) for l = L-1..1."""
    h, L = cache["h"], len(params["W"])
    h_hat = {L: label_target(cache, e)}                                            # SDTP: the label
    for l in range(L - 1, 0, -1):
        h_hat[l] = h[l] - g(params, l + 1, h[l + 1], cfg) + g(params, l + 1, h_hat[l + 1], cfg)  # DTP
    return target_errors(cache, h_hat, e, cfg)


# ------------------------------------------------------------------------------------------------
# AO-SDTP (Bartunov 2018): the output layer also emits z = f(h_(L-1) A^T), random untrained features of
# h_(L-1) (fixed A), so that g_L sees more than the 10 class units. The target keeps z: [t, z].

def aosdtp_init(params, cfg, rng):
    """Fixed Glorot-uniform A (n_aux, n_(L-1)), then SDTP's inverses (g_L reads n_out + n_aux units)."""
    if cfg.n_aux <= 0:
        raise ValueError(f"n_aux={cfg.n_aux}: aosdtp needs auxiliary output units (Bartunov: 512)")
    n = params["W"][-1].shape[1]
    params["A"] = uniform(rng, np.sqrt(6.0 / (n + cfg.n_aux)), (cfg.n_aux, n), cfg)
    return sdtp_init(params, cfg, rng)


def aux_units(params, h, cfg):
    """z = f(h_(L-1) A^T), (B, n_aux): the auxiliary outputs; never trained."""
    return act(cfg.activation, h @ params["A"].T)


def aosdtp_hidden_errors(params, cache, e, cfg):
    """AO-SDTP: h_hat_(L-1) = h_(L-1) - g_L([y, z]) + g_L([t, z]), then DTP's targets below."""
    h, L = cache["h"], len(params["W"])
    z = aux_units(params, h[L - 1], cfg)
    h_hat = {L - 1: h[L - 1] - g(params, L, np.hstack([h[L], z]), cfg)
             + g(params, L, np.hstack([label_target(cache, e), z]), cfg)}         # AO: z is its own target
    for l in range(L - 2, 0, -1):
        h_hat[l] = h[l] - g(params, l + 1, h[l + 1], cfg) + g(params, l + 1, h_hat[l + 1], cfg)  # DTP
    return target_errors(cache, h_hat, e, cfg)


# ------------------------------------------------------------------------------------------------
# The registry, the generic training step, and the angle to backprop.

RULES = {
    "bp": Rule(no_extra_init, bp_hidden_errors),
    "fa": Rule(fa_init, fa_hidden_errors),
    "dfa": Rule(dfa_init, dfa_hidden_errors),
    "sign": Rule(no_extra_init, sign_hidden_errors),
    "tp": Rule(tp_init, tp_hidden_errors, train_noisy_inverses),
    "dtp": Rule(tp_init, dtp_hidden_errors, train_noisy_inverses),
    "sdtp": Rule(sdtp_init, sdtp_hidden_errors, train_denoising_inverses),
    "aosdtp": Rule(aosdtp_init, aosdtp_hidden_errors, train_denoising_inverses),
}


def make(rule, cfg, rng):
    """Parameters and optimizer state for `rule` on the network cfg.sizes."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {sorted(RULES)}")
    params = RULES[rule].init(init(cfg.sizes, cfg, rng), cfg, rng)
    opt = init_optimizer(params)
    if RULES[rule].extra_update is not None:      # the inverses' own optimizer, noise, schedule position
        opt.update(inv=init_optimizer(inverses(params)), rng=np.random.default_rng(rng.integers(2**63)),
                   steps=0)
    return params, opt


def step(rule, params, opt, x, t, cfg):
    """One minibatch of training: forward, output error, the rule's hidden errors, update.

    Parameters
    ----------
    rule : str          a key of RULES
    params, opt : dict  from `make`; updated in place
    x : (B, n_in)       inputs
    t : (B, n_out)      targets (one-hot for classification)

    Returns the minibatch loss before the update (NaN or inf means the run diverged).
    """
    _, hidden_errors, extra_update = RULES[rule]
    cache = forward(params, x, cfg)
    e = output_error(cache, t, cfg)
    train_forward, train_extra = True, False
    if extra_update is not None:                  # TP family: forward and/or inverse step, by cfg.schedule
        train_forward, train_extra = phases(opt, cfg)
        opt["steps"] += 1
    if train_forward:
        deltas = hidden_errors(params, cache, e, cfg)
    if train_extra:
        extra_update(params, opt, cache, cfg)     # before W changes, so both losses see the same network
    if train_forward:
        update(params, gradients(cache, deltas), opt, cfg)
    return loss(cfg, cache["h"][-1], t)


def update_angles(rule, params, cache, e, cfg):
    """Angle in degrees between `rule`'s and backprop's update of each hidden layer, per example.

    For example i every rule changes (W_l, b_l) by -lr * delta_l[i] outer [h_(l-1)[i], 1] (before the
    optimizer rescales it). Both updates share the factor v = [h_(l-1)[i], 1], so the angle between the
    flattened updates equals the angle between the rows delta_l[i] and delta_bp_l[i]:
        cos = <d, d_bp> ||v||^2 / (||d|| ||v|| ||d_bp|| ||v||) = <d, d_bp> / (||d|| ||d_bp||).

    Parameters
    ----------
    cache : from forward(params, x, cfg);  e : from output_error(cache, t, cfg)

    Returns a list of L-1 arrays (B,), hidden layers 1..L-1, bottom first; NaN where an update is zero.
    The output layer is left out: every rule updates it with e, so its angle is 0.
    """
    ours = RULES[rule].hidden_errors(params, cache, e, cfg)[:-1]
    bp = bp_hidden_errors(params, cache, e, cfg)[:-1]
    angles = []
    for d, d_bp in zip(ours, bp):
        d, d_bp = d.astype(np.float64), d_bp.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.sum(d * d_bp, axis=1) / (np.linalg.norm(d, axis=1) * np.linalg.norm(d_bp, axis=1))
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return angles


def predict(params, x, cfg, chunk=10_000):
    """Class predictions: the most active output unit, in chunks to bound memory."""
    return np.concatenate([forward(params, x[i:i + chunk], cfg)["h"][-1].argmax(axis=1)
                           for i in range(0, len(x), chunk)])
