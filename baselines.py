"""baselines.py -- the learning rules the segregated-dendrite network is compared with.

Every rule trains the same multilayer perceptron and shares one skeleton (forward pass, output error,
layer gradients, optimizer step). The rules differ only in `hidden_errors`: how the output error is sent
back to the hidden layers. Reading two rules side by side shows that one place.

    backprop (BP)   Rumelhart, Hinton & Williams (1986); written out as in Nielsen, "Neural Networks and
                    Deep Learning", ch. 2 (network.py `backprop`).

Notation follows baselines.md section 1: a_l = h_(l-1) W_l^T + b_l, h_l = f(a_l), output y = h_L,
e = dLoss/da_L, and every rule updates dW_l = delta_l^T h_(l-1), db_l = sum of delta_l over the batch.

Arrays are batch-first rows: x (B, n_in), h_l (B, n_l), delta_l (B, n_l). Weights W_l are (n_l, n_(l-1)),
the papers' orientation. No I/O here: experiments.py loads data, loops over minibatches, prints and saves.
Example: python experiments.py --train bp --dataset mnist --epochs 20
"""
from dataclasses import dataclass

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
# The rules. Each entry: (extra init, hidden errors). Later sections add FA, DFA, sign symmetry, ...

def no_extra_init(params, cfg, rng):
    return params


RULES = {
    "bp": (no_extra_init, bp_hidden_errors),
}


def make(rule, cfg, rng):
    """Parameters and optimizer state for `rule` on the network cfg.sizes."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {sorted(RULES)}")
    extra_init, _ = RULES[rule]
    params = extra_init(init(cfg.sizes, cfg, rng), cfg, rng)
    return params, init_optimizer(params)


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
    cache = forward(params, x, cfg)
    e = output_error(cache, t, cfg)
    deltas = RULES[rule][1](params, cache, e, cfg)
    update(params, gradients(cache, deltas), opt, cfg)
    return loss(cfg, cache["h"][-1], t)


def predict(params, x, cfg, chunk=10_000):
    """Class predictions: the most active output unit, in chunks to bound memory."""
    return np.concatenate([forward(params, x[i:i + chunk], cfg)["h"][-1].argmax(axis=1)
                           for i in range(0, len(x), chunk)])
