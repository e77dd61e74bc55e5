"""baselines.py -- the learning rules the segregated-dendrite network is compared with.

Every rule trains the same multilayer perceptron and shares one skeleton (forward pass, output error,
layer gradients, optimizer step). The rules differ only in `hidden_errors`: how the output error is sent
back to the hidden layers. Reading two rules side by side shows that one place.

    bp      backprop [1]; written out as in Nielsen, "Neural Networks and Deep Learning", ch. 2
            (network.py `backprop`).
    fa      feedback alignment [2].
    dfa     direct feedback alignment [3].
    sign    sign symmetry (uniform sign-concordant feedback, uSF) [4]; scaling as in BioTorch [10].
    tp      target propagation through learned inverses g_l [5].
    dtp     difference target propagation [5].
    sdtp    simplified DTP: no gradient at the top [6].
    aosdtp  SDTP with auxiliary random output units [6].
Three rules with trainers of their own close the file: Krotov-Hopfield [7], equilibrium propagation [8]
and the dendritic cortical microcircuit [9].

Notation: a_l = h_(l-1) W_l^T + b_l, h_l = f(a_l), output y = h_L,
e = dLoss/da_L, and every rule updates dW_l = delta_l^T h_(l-1), db_l = sum of delta_l over the batch.
The target-propagation rules fit the same mould: their delta_l is the gradient
of the local loss ||h_l - h_hat_l||^2 with respect to a_l, and they also train inverses g_l.
Comments cite the references below by number, with the equation, section or table ("[8] Table 2"),
or name the file of the reference code.

Arrays are batch-first rows: x (B, n_in), h_l (B, n_l), delta_l (B, n_l). Weights W_l are (n_l, n_(l-1)),
the papers' orientation. Python lists are 0-based: params["W"][l - 1] is W_l, cache["h"][l] is h_l.
No I/O here: experiments.py loads data, loops over minibatches, prints and saves.
Example: python experiments.py --train dtp --dataset mnist --hidden 256 256 256 256 256 --activation tanh

References ("code": GitHub owner/name, file, and the commit read where known)
[1] D. E. Rumelhart, G. E. Hinton, R. J. Williams (1986). Learning representations by back-propagating
    errors. Nature 323:533-536.
[2] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman (2016). Random synaptic feedback weights
    support error backpropagation for deep learning. Nat. Commun. 7:13276; arXiv:1411.0247.
[3] A. Noekland (2016). Direct feedback alignment provides learning in deep neural networks. NeurIPS;
    arXiv:1609.01596. Code: anokland/dfa-torch (Lua/Torch7, commit 17dae736), Models/*.lua.
[4] Q. Liao, J. Z. Leibo, T. Poggio (2016). How important is weight symmetry in backpropagation? AAAI;
    arXiv:1510.05067.
[5] D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio (2015). Difference target propagation. ECML-PKDD;
    arXiv:1412.7525. Code: donghyunlee/dtp, conti_dtp.py (Theano, commit 9daa5b24).
[6] S. Bartunov, A. Santoro, B. A. Richards, L. Marris, G. E. Hinton, T. P. Lillicrap (2018). Assessing
    the scalability of biologically-motivated deep learning algorithms and architectures. NeurIPS.
[7] D. Krotov, J. J. Hopfield (2019). Unsupervised learning by competing hidden units. PNAS 116:7723.
    Code: DimaKrotov/Biological_Learning, Unsupervised_learning_algorithm_MNIST.ipynb (commit 45478bb8);
    third-party re-implementation gatapia/unsupervised_bio_classifier, src/bio_learn2.py.
[8] B. Scellier, Y. Bengio (2017). Equilibrium propagation: bridging the gap between energy-based models
    and backpropagation. Front. Comput. Neurosci. 11:24; arXiv:1602.05179.
    Code: bscellier/Towards-a-Biologically-Plausible-Backprop, train_model.py and model.py (Theano).
[9] J. Sacramento, R. Ponte Costa, Y. Bengio, W. Senn (2018). Dendritic cortical microcircuits approximate
    the backpropagation algorithm. NeurIPS. No official code; the third-party NumPy code
    miyosuda/dendritic_bp (option.py) covers the paper's regression and association tasks, not MNIST.
[10] A. Sanfiz, M. Akrout (2021). BioTorch. arXiv:2108.13446. Code: jsalbert/biotorch (commit 74fad0dd).
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
    t_half: int = 0                 # lr divided by 1 + (t - 1) / t_half at optimizer step t (0: constant, as
                                    #   in Bartunov's and Lee's runs); next_decay, as EqProp's
    ema: float = 0.0                # > 0: also keep W_avg <- ema W_avg + (1 - ema) W after each forward step
                                    #   (Polyak averaging), for evaluation; 0: evaluate W itself, as published
    dtype: str = "float32"          # float32 for training, float64 for gradient checks
    # Target-propagation family only (tp, dtp, sdtp, aosdtp): Lee's code [5] and Bartunov [6] Tables 4-5.
    alpha: float = 0.3277           # step size of the top target h_L-1 - alpha dL/dh_L-1 (tp, dtp); Lee's
                                    #   code 0.3277 with RMSprop; Bartunov searched [0.01, 0.2]
    sigma: float = 0.3598           # std of the noise added to h_(l-1) when training g_l; Lee's code
                                    #   0.3598; Bartunov searched [0.01, 0.3]
    lr_inv: float = 1e-4            # learning rate of the inverses g_l (same optimizer as the forward
                                    #   weights); Lee RMSprop 5.011e-3; Bartunov Adam, Table 4 range
                                    #   [1e-5, 3e-4], but Table 5's best MNIST-FC values are 7.7e-4 to
                                    #   9.6e-3 (SDTP alternating: 9.572e-3)
    beta2_inv: float = 0.999        # the inverses' own Adam beta2 and eps: Bartunov's Table 4 searches them
    eps_inv: float = 1e-8           #   apart from the forward beta2 and eps (Table 5, SDTP alternating on
                                    #   MNIST-FC: forward 0.95 / 1e-4, inverse 0.95 / 1e-3)
    schedule: str = "alternating"   # alternating: a phase of inverse steps, then one of forward steps
                                    #   (Lee's schedule); parallel: both on every minibatch (Bartunov)
    phase_steps: int = 500          # minibatches per phase of the alternating schedule; 500 = one epoch
                                    #   of 50,000 MNIST images at batch 100 (one epoch each, Lee/Bartunov).
                                    #   Lee's conti_dtp.py counts an inverse pass plus a forward pass as
                                    #   one of its 100 epochs; Bartunov does not say how they counted
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
        if int(self.t_half) != self.t_half or self.t_half < 0:
            raise ValueError(f"t_half={self.t_half}: must be an integer >= 0 (0 keeps the learning rate constant)")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema={self.ema}: the averaging factor must be in [0, 1) (0: no averaging)")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: choose 'float32' or 'float64'")
        if not self.alpha > 0 or not self.lr_inv > 0:
            raise ValueError(f"alpha={self.alpha}, lr_inv={self.lr_inv}: the top-target step alpha and "
                             "the inverse learning rate lr_inv must be positive (e.g. --alpha 0.1)")
        if not 0 <= self.beta2_inv < 1 or not self.eps_inv > 0:
            raise ValueError(f"beta2_inv={self.beta2_inv}, eps_inv={self.eps_inv}: the inverses' Adam beta2 "
                             "must be in [0, 1) and eps positive (e.g. --set beta2_inv=0.95 eps_inv=1e-3)")
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
# The shared skeleton: init, forward, output error, hidden errors, gradients, update.

def init(sizes, cfg, rng):
    """Weights W_l (n_l, n_(l-1)) and biases b_l (n_l,), layer by layer; biases start at zero."""
    W, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if cfg.init == "glorot":
            r = np.sqrt(6.0 / (n_in + n_out))
            W.append(uniform(rng, r, (n_out, n_in), cfg))
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
    lr = cfg.lr * next_decay(opt, cfg.t_half)                # counts the step in opt["t"]
    t = opt["t"]
    for k in ("W", "b"):
        for p, g, m, v, s in zip(params[k], grads[k], opt["m"][k], opt["v"][k], opt["s"][k]):
            if cfg.optimizer == "sgd":                        # p <- p - lr g
                np.multiply(g, lr, out=s)
                p -= s
            elif cfg.optimizer == "momentum":                 # heavy ball: m <- mu m - lr g; p <- p + m
                m *= cfg.momentum
                np.multiply(g, lr, out=s)
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
                s *= lr
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
                s *= lr * c / (1 - cfg.beta1 ** t)
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


# Plausibility marks, declared next to each rule below (sdnn.py declares its own): for each property of
# PROPERTIES, (mark, reason) with mark "yes", "no" or "partly"; "backward_steps" is the sequential
# critical path, the number of layer-to-layer steps an error (or target) takes before the first hidden
# layer can update, as a formula in L, the number of hidden layers, with its reason. Data only:
# `python experiments.py --study complexity` builds the table from it.
PROPERTIES = {
    "exact_gradients": "the update is the gradient of the loss (or becomes it in a limit)",
    "no_weight_transport": "no synapse's update or feedback needs the value of another synapse",
    "no_separate_pathways": "errors reach a neuron through the neuron itself (a compartment, a phase), "
                            "not through a backward network of their own",
    "dendritic_integration": "feedback arrives in a dendritic compartment apart from the feedforward input",
    "separate_weights_learned": "feedback weights, apart from the forward ones, are learned by a rule of their own",
    "linear_stabilisation": "the signal approximates the gradient only to first order: a linear correction, "
                            "weak nudging or a small-beta limit keeps it close",
    "explicit_error_representation": "a unit or compartment carries a signed error value",
}
PLAUSIBILITY = {}


# ------------------------------------------------------------------------------------------------
# BP: delta_l = (delta_(l+1) W_(l+1)) * f'(a_l)  -- bp_hidden_errors in the skeleton above.

PLAUSIBILITY["bp"] = {
    "exact_gradients": ("yes", "delta_l = (delta_(l+1) W_(l+1)) f'(a_l) is the chain rule [1]"),
    "no_weight_transport": ("no", "the backward pass multiplies by W_(l+1), the forward synapses' own values"),
    "no_separate_pathways": ("no", "delta travels down a backward pathway of its own"),
    "dendritic_integration": ("no", "point units: nothing keeps feedback apart from feedforward input"),
    "separate_weights_learned": ("no", "no feedback weights: the backward pass reuses W"),
    "linear_stabilisation": ("no", "exact: nothing to correct"),
    "explicit_error_representation": ("yes", "delta_l is a signed error per unit"),
    "backward_steps": ("L", "delta passes W_(L+1), ..., W_2 one layer at a time"),
}


# ------------------------------------------------------------------------------------------------
# FA (Lillicrap 2016 [2]): a fixed random B_(l+1) in place of W_(l+1).

def fa_init(params, cfg, rng):
    """B_(l+1) ~ U(+-1/sqrt(n_l)), the shape of W_(l+1) (n_(l+1), n_l); [3] code, Models/Linear.lua."""
    W = params["W"]
    params["B"] = {l: uniform(rng, 1 / np.sqrt(W[l].shape[1]), W[l].shape, cfg) for l in range(1, len(W))}
    return params


def fa_hidden_errors(params, cache, e, cfg):
    """FA: delta_l = (delta_(l+1) B_(l+1)) * f'(a_l); B fixed and random [2]."""
    deltas = [e]
    for l in range(len(params["W"]) - 1, 0, -1):
        back = deltas[0] @ params["B"][l]                    # FA: fixed random B_(l+1), shape of W_(l+1)
        deltas.insert(0, back * dact(cfg.activation, cache["h"][l]))
    return deltas


PLAUSIBILITY["fa"] = {
    "exact_gradients": ("no", "B replaces W: the update comes within 90 deg of BP's as W aligns with B [2]"),
    "no_weight_transport": ("yes", "B_(l+1) is fixed and random, independent of W"),
    "no_separate_pathways": ("no", "the error still travels down a backward pathway, through B"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("no", "B stays fixed at its random start"),
    "linear_stabilisation": ("no", "no correction: alignment comes from W learning [2]"),
    "explicit_error_representation": ("yes", "delta_l is a signed error per unit"),
    "backward_steps": ("L", "the error passes B_(L+1), ..., B_2 one layer at a time"),
}


# ------------------------------------------------------------------------------------------------
# DFA (Noekland 2016 [3]): the output error e goes straight to every hidden layer through a fixed D_l.

def dfa_init(params, cfg, rng):
    """D_l ~ U(+-1/sqrt(n_l)), shape (n_out, n_l); [3] code, Models/ErrorFeedback.lua with rfb_mag = 0."""
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


PLAUSIBILITY["dfa"] = {
    "exact_gradients": ("no", "a fixed random D_l replaces the product of the layers above [3]"),
    "no_weight_transport": ("yes", "D_l is fixed and random"),
    "no_separate_pathways": ("no", "a direct feedback pathway from the output error to every hidden layer"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("no", "D_l stays fixed at its random start"),
    "linear_stabilisation": ("no", "no correction term: alignment comes from W learning, as FA"),
    "explicit_error_representation": ("yes", "e and delta_l are signed errors per unit"),
    "backward_steps": ("1", "e reaches every hidden layer at once, through its own D_l [3]"),
}


# ------------------------------------------------------------------------------------------------
# Sign symmetry, uSF (Liao 2016 [4]; BioTorch [10], biotorch/layers/usf/linear.py): the feedback shares
# only the signs of W_(l+1).

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


PLAUSIBILITY["sign"] = {
    "exact_gradients": ("no", "only the signs of W_(l+1) are sent back, with a fixed magnitude [4]"),
    "no_weight_transport": ("partly", "the feedback must know, and follow, the sign of every forward synapse"),
    "no_separate_pathways": ("no", "the error travels down a backward pathway"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("no", "the feedback is computed from W's signs, not learned by a rule of its own"),
    "linear_stabilisation": ("no", "no correction term: the signs follow W as it learns"),
    "explicit_error_representation": ("yes", "delta_l is a signed error per unit"),
    "backward_steps": ("L", "the error passes sign(W_(L+1)), ..., sign(W_2) one layer at a time"),
}


# ------------------------------------------------------------------------------------------------
# Target propagation, shared pieces (Lee 2015 [5], Bartunov 2018 [6]). Layer l < L gets a target h_hat_l
# and learns from its local loss ||h_l - h_hat_l||^2, whose gradient with respect to a_l is
# delta_l = 2 (h_l - h_hat_l) * f'(a_l): only targets cross layers, never gradients. The local and
# inverse losses are squared norms without a 1/2, as in [6] Algorithm 1 and Lee's code (`mse`: sum over
# units, mean over the batch); with Adam the factor 2 only matters through eps, which Bartunov set as
# large as 1e-4 (forward) and 1e-3 (inverse) ([6] Table 5).
# Targets travel down through learned approximate inverses
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
    """Approximate inverse of layer l: g_l(h_l) = f(h_l V_l^T + c_l) ~ h_(l-1) [5, 6]."""
    return act(cfg.activation, h_l @ params["V"][l].T + params["c"][l])      # (B, n_(l-1))


def layer(params, l, h_prev, cfg):
    """f_l(h_(l-1)), layer l alone; aosdtp's top layer also returns its auxiliary units, [y, z]."""
    a = h_prev @ params["W"][l - 1].T + params["b"][l - 1]
    if l < len(params["W"]):
        return act(cfg.activation, a)
    y = output_units(cfg, a)
    return np.hstack([y, aux_units(params, h_prev, cfg)]) if "A" in params else y


def target_errors(cache, h_hat, e, cfg):
    """delta_l = 2 (h_l - h_hat_l) * f'(a_l) / B for l = 1..L-1: the gradient of the batch mean of the local
    losses ||h_l - h_hat_l||^2 [5, 6]; delta_L = e."""
    h = cache["h"]
    return [2 * (h[l] - h_hat[l]) * dact(cfg.activation, h[l]) / len(e) for l in range(1, len(h) - 1)] + [e]


def inverse_loss(params, l, h_prev, eps, cfg, denoise):
    """Inverse loss of g_l on one batch, and its gradient with respect to V_l and c_l.

    noise-preserving (Lee 2015 [5]):      ||h~ - g_l(f_l(h~))||^2,  h~ = h_(l-1) + eps
    denoising (Bartunov 2018 [6]):        ||h  - g_l(f_l(h~))||^2
    Batch mean; f_l is held fixed. Returns (loss, dV like V_l, dc like c_l).
    """
    h_tilde = h_prev + eps
    u = layer(params, l, h_tilde, cfg)                       # (B, n_l)      f_l(h~_(l-1))
    r = g(params, l, u, cfg)                                 # (B, n_(l-1))  g_l(f_l(h~_(l-1)))
    diff = r - (h_prev if denoise else h_tilde)
    d = 2 * diff * dact(cfg.activation, r) / len(r)          # dL_inv / d(input of g_l's units)
    return float(np.mean(np.sum(diff * diff, axis=1))), d.T @ u, d.sum(axis=0)


def train_inverses(params, opt, cache, cfg, denoise):
    """One optimizer step (lr_inv, beta2_inv, eps_inv) on every g_l, with fresh noise eps ~ N(0, sigma^2)."""
    h, grads = cache["h"], {"W": [], "b": []}
    for l in params["V"]:
        eps = cfg.sigma * opt["rng"].standard_normal(h[l - 1].shape, dtype=cfg.dtype)
        _, dV, dc = inverse_loss(params, l, h[l - 1], eps, cfg, denoise)
        grads["W"].append(dV)
        grads["b"].append(dc)
    inverse_cfg = replace(cfg, lr=cfg.lr_inv, beta2=cfg.beta2_inv, eps=cfg.eps_inv)
    update(inverses(params), grads, opt["inv"], inverse_cfg)


def train_noisy_inverses(params, opt, cache, cfg):
    return train_inverses(params, opt, cache, cfg, denoise=False)   # tp, dtp (Lee 2015)


def train_denoising_inverses(params, opt, cache, cfg):
    return train_inverses(params, opt, cache, cfg, denoise=True)    # sdtp, aosdtp (Bartunov 2018)


def phases(opt, cfg):
    """(train the forward weights?, train the inverses?) for the next minibatch: alternating phases of
    inverse and forward steps (Lee's schedule, [5] code conti_dtp.py) or both every minibatch ([6])."""
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
    """h_hat_(L-1) = h_(L-1) - alpha dL/dh_(L-1), per example (Lee 2015 [5])."""
    L = len(params["W"])
    return cache["h"][L - 1] - cfg.alpha * (len(e) * e) @ params["W"][L - 1]   # len(e): undo the batch mean


def tp_hidden_errors(params, cache, e, cfg):
    """TP: h_hat_l = g_(l+1)(h_hat_(l+1)) below the gradient-step target; deltas from the local losses."""
    L = len(params["W"])
    h_hat = {L - 1: gradient_step_target(params, cache, e, cfg)}
    for l in range(L - 2, 0, -1):
        h_hat[l] = g(params, l + 1, h_hat[l + 1], cfg)                             # TP: inverse only
    return target_errors(cache, h_hat, e, cfg)


PLAUSIBILITY["tp"] = {
    "exact_gradients": ("no", "targets through learned inverses; no gradient below the top hidden layer [5]"),
    "no_weight_transport": ("partly", "the top target h_(L-1) - alpha dL/dh_(L-1) uses W_L; below, only g_l"),
    "no_separate_pathways": ("no", "targets travel down a network of inverses g_l of their own"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("yes", "the inverses g_l learn from their reconstruction loss"),
    "linear_stabilisation": ("no", "no difference correction, hence the failure described above"),
    "explicit_error_representation": ("partly", "each layer forms h_l - h_hat_l; targets, not errors, travel"),
    "backward_steps": ("L", "one gradient step to the top hidden layer, then g_L, ..., g_2 in turn"),
}


# ------------------------------------------------------------------------------------------------
# DTP (Lee 2015 [5]): as TP, plus the difference correction h_l - g_(l+1)(h_(l+1)), which cancels the
# inverse's reconstruction error: if h_hat_(l+1) = h_(l+1), then h_hat_l = h_l exactly.

def difference_targets(params, h, h_hat, top, cfg):
    """h_hat_l = h_l - g_(l+1)(h_(l+1)) + g_(l+1)(h_hat_(l+1)) for l = top-1..1, below h_hat[top]."""
    for l in range(top - 1, 0, -1):
        h_hat[l] = h[l] - g(params, l + 1, h[l + 1], cfg) + g(params, l + 1, h_hat[l + 1], cfg)  # DTP
    return h_hat


def dtp_hidden_errors(params, cache, e, cfg):
    """DTP: difference targets below the gradient-step target h_hat_(L-1)."""
    L = len(params["W"])
    h_hat = {L - 1: gradient_step_target(params, cache, e, cfg)}
    return target_errors(cache, difference_targets(params, cache["h"], h_hat, L - 1, cfg), e, cfg)


PLAUSIBILITY["dtp"] = dict(PLAUSIBILITY["tp"], linear_stabilisation=(
    "yes", "the difference correction h_l - g(h_(l+1)) cancels the inverse's error to first order [5]"))


# ------------------------------------------------------------------------------------------------
# SDTP (Bartunov 2018 [6]): no gradient anywhere. The output target is the label itself, and the penultimate
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
    L = len(params["W"])
    h_hat = {L: label_target(cache, e)}                                            # SDTP: the label
    return target_errors(cache, difference_targets(params, cache["h"], h_hat, L, cfg), e, cfg)


PLAUSIBILITY["sdtp"] = dict(
    PLAUSIBILITY["dtp"],
    exact_gradients=("no", "the output target is the label; targets through learned inverses [6]"),
    no_weight_transport=("yes", "no gradient is transported anywhere [6]"),
    backward_steps=("L", "from the label through g_(L+1), ..., g_2 in turn"))


# ------------------------------------------------------------------------------------------------
# AO-SDTP (Bartunov 2018 [6]): the output layer also emits z = f(h_(L-1) A^T), random untrained features of
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
    return target_errors(cache, difference_targets(params, h, h_hat, L - 1, cfg), e, cfg)


PLAUSIBILITY["aosdtp"] = dict(PLAUSIBILITY["sdtp"])   # the auxiliary units change no mark


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
    if cfg.ema:
        opt["avg"] = {k: [p.copy() for p in params[k]] for k in ("W", "b")}
    return params, opt


def averaged(params, opt):
    """The weights to evaluate: the Polyak average {"W", "b"} if cfg.ema > 0, else params themselves."""
    return opt.get("avg", params)


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
        if cfg.ema:                               # Polyak averaging: W_avg <- ema W_avg + (1 - ema) W
            for k in ("W", "b"):                  # through update's scratch buffers: no temporaries
                for avg, p, s in zip(opt["avg"][k], params[k], opt["s"][k]):
                    avg *= cfg.ema
                    np.multiply(p, 1 - cfg.ema, out=s)
                    avg += s
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


def in_chunks(classify, x, chunk=10_000):
    """classify(x[i:i + chunk]) for each chunk, joined: bounded memory; an empty x gives no classes."""
    return np.concatenate([classify(x[i:i + chunk]) for i in range(0, len(x), chunk)] or
                          [np.zeros(0, np.int64)])


def predict(params, x, cfg):
    """Class predictions: the most active output unit."""
    return in_chunks(lambda xc: forward(params, xc, cfg)["h"][-1].argmax(axis=1), x)


# ================================================================================================
# Three rules with trainers of their own ([7], [8], [9]). They do not fit the skeleton
# above: Krotov-Hopfield learns its hidden layer without labels, equilibrium propagation settles an
# energy twice, the microcircuit carries its errors in apical dendrites. Each has a small frozen config
# and pure functions (arrays in, arrays out, explicit np.random.Generator); experiments.py loops.
# Weights keep the orientation of the skeleton: W_l (n_l, n_(l-1)), rows are examples.


# ---- Krotov-Hopfield: unsupervised learning by competing hidden units -------------------------
# Krotov & Hopfield (2019) [7]. Reference code: DimaKrotov/Biological_Learning, the MNIST notebook
# (Unsupervised_learning_algorithm_MNIST.ipynb), whose loop kh_currents / kh_competition / kh_update
# follow line by line.

from numba import njit  # noqa: E402  (here, so that the sections above stay plain NumPy)

@dataclass(frozen=True)
class KHConfig:
    """Krotov-Hopfield network: v (n_in) -> h (n_hidden, unsupervised) -> c (n_out, supervised)."""
    n_hidden: int = 2000        # hidden units; the paper's MNIST network [7] (also gatapia's); demo 100
    p: float = 3.0              # Lebesgue-p norm of the synapses; paper MNIST p = 3 (recalled, not checked
                                #   against [7]), demo p = 2
    k: int = 7                  # rank of the unit that gets -Delta; paper MNIST k = 7 (recalled, as p), demo 2
    Delta: float = 0.4          # strength of the anti-Hebbian term (demo and paper)
    eps0: float = 2e-2          # initial learning rate of the synapses (demo notebook)
    epochs_unsup: int = 100     # unsupervised epochs; eps falls linearly from eps0 to 0 over them (notebook)
    batch_unsup: int = 100      # minibatch of the unsupervised layer (demo notebook)
    precision: float = 1e-30    # floor of max|dW| in the normalisation (demo notebook `prec`)
    n: float = 4.5              # power of the rectified polynomial units h = max(W v, 0)^n [7] (n, beta, m
                                #   as in gatapia's bio_learn2.py, BioClassifier and BioLoss)
    beta: float = 0.01          # inverse temperature of the outputs c = tanh(beta S h)
    m: int = 6                  # loss exponent: C = sum_alpha |c_alpha - t_alpha|^m, t in {-1, +1}
    lr: float = 1e-6            # Adam learning rate of the top layer S (Adam constants as in Config).
                                #   Only beta lr matters (Adam is scale-free in the gradient): with h of
                                #   order 1e4-1e6 (MNIST, 2000 units, p = 3, 30 epochs) 1e-3 saturates
                                #   tanh at once; 1e-6 was best of 1e-7..1e-5 on the validation split
                                #   over 8 epochs; for 200 annealed epochs 3e-6 reached 1.89 % val error
    batch: int = 100            # minibatch of the top layer
    anneal_top: bool = True     # top-layer lr falls linearly to 0 over its epochs, like eps; without it
                                #   the validation error of 784-2000-10 kept jumping by 0.5 % between epochs
    dtype: str = "float32"      # float32 for training, float64 for the tests

    def __post_init__(self):
        if int(self.n_hidden) != self.n_hidden or self.n_hidden < 2:
            raise ValueError(f"n_hidden={self.n_hidden}: the competition needs at least 2 hidden units "
                             "(e.g. --hidden 2000)")
        if int(self.k) != self.k or not 2 <= self.k <= self.n_hidden:
            raise ValueError(f"k={self.k}: the anti-Hebbian rank must be an integer in [2, n_hidden] "
                             "(rank 1 is the Hebbian winner); Krotov uses k = 2 (demo) or 7")
        if not self.p >= 2:
            raise ValueError(f"p={self.p}: the Lebesgue exponent must be >= 2 (demo 2, paper 3)")
        if not self.Delta >= 0 or not self.eps0 > 0 or not self.lr > 0:
            raise ValueError(f"Delta={self.Delta}, eps0={self.eps0}, lr={self.lr}: Delta must be >= 0 and "
                             "the learning rates positive")
        if min(self.batch, self.batch_unsup) <= 0 or self.epochs_unsup < 0:
            raise ValueError(f"batch={self.batch}, batch_unsup={self.batch_unsup}, epochs_unsup="
                             f"{self.epochs_unsup}: the batches must be positive, the epochs >= 0")


def kh_init(n_in, cfg, rng):
    """Synapses W (n_hidden, n_in) ~ N(0, 1), the notebook's initialisation [7]."""
    return rng.standard_normal((cfg.n_hidden, n_in)).astype(cfg.dtype)


def lp_weights(W, p):
    """sign(W) |W|^(p-1): what multiplies v in the Lebesgue-p inner product <W_mu, v>."""
    if p == 2:
        return W
    if p == 3:
        return W * np.abs(W)                                 # the same for p = 3, without pow
    return np.sign(W) * np.abs(W) ** (p - 1)


def kh_currents(W, v, p):
    """I_mu = <W_mu, v>_mu = sum_i sign(W_mu,i) |W_mu,i|^(p-1) v_i for each example: (B, n_hidden)."""
    return v @ lp_weights(W, p).T                            # [7] notebook: the currents


@njit(cache=True)
def _top_and_kth(I, k):
    """Per row of I, the index of the largest entry and of the k-th largest: one pass with a sorted
    buffer of k, O(n_hidden k) per row; np.argpartition took a quarter of a 784-2000 step."""
    B, N = I.shape
    top, kth = np.empty(B, np.int64), np.empty(B, np.int64)
    vals, idx = np.empty(k, I.dtype), np.empty(k, np.int64)
    for b in range(B):
        n = 0
        for j in range(N):
            x = I[b, j]
            if n < k:
                p = n
                n += 1
            elif x > vals[k - 1]:
                p = k - 1
            else:
                continue
            while p > 0 and vals[p - 1] < x:                 # insertion into the descending buffer
                vals[p] = vals[p - 1]
                idx[p] = idx[p - 1]
                p -= 1
            vals[p] = x
            idx[p] = j
        top[b], kth[b] = idx[0], idx[k - 1]
    return top, kth


def kh_ranked(I, k):
    """Per example, the most driven hidden unit and the k-th ranked one: two (B,) index arrays.
    NumPy twin of the kernel: ranked = np.argsort(-I, axis=1); ranked[:, 0], ranked[:, k - 1]."""
    return _top_and_kth(np.ascontiguousarray(I), k)


def kh_competition(I, k, Delta):
    """g (B, n_hidden): +1 for each example's most driven unit, -Delta for its k-th ranked unit, else 0.

    The fast version of the paper's global inhibition [7]. As in the reference notebook only the
    single k-th ranked unit is pushed away, not every unit ranked below k (the question of
    gatapia/unsupervised_bio_classifier issue #1)."""
    top, kth = kh_ranked(I, k)
    rows = np.arange(len(I))
    g = np.zeros_like(I)
    g[rows, top] = 1.0                                       # Hebbian: the winner
    g[rows, kth] = -Delta                                    # anti-Hebbian: the k-th ranked unit only
    return g


def kh_sparse_update(W, v, cfg):
    """The normalised update of one minibatch v (B, n_in) on the rows it touches: (units, dW[units]).

    dW_mu,i = sum over the batch of g_mu (v_i - I_mu W_mu,i)  ([7] Eq. 3 with the notebook's rank-based
    g), divided by max|dW| (the notebook's normalisation). Only the winners and the k-th ranked units of the
    batch have g_mu != 0, at most 2B of the n_hidden rows, so only those rows are formed: on 784-2000
    the dense form spent most of a step multiplying zeros. Dense textbook form, left for reference:
        g = kh_competition(I, cfg.k, cfg.Delta)
        dW = g.T @ v - np.sum(g * I, axis=0)[:, None] * W
        dW /= max(np.abs(dW).max(), cfg.precision)"""
    I = kh_currents(W, v, cfg.p)                             # (B, n_hidden)
    top, kth = kh_ranked(I, cfg.k)
    rows = np.arange(len(v))
    units = np.unique(np.concatenate([top, kth]))            # the rows with g_mu != 0 for some example
    g = np.zeros((len(v), len(units)), I.dtype)              # g restricted to those units (B, n_units)
    g[rows, np.searchsorted(units, top)] = 1.0               # Hebbian: the winner
    g[rows, np.searchsorted(units, kth)] = -cfg.Delta        # anti-Hebbian: the k-th ranked unit
    dW = g.T @ v - np.sum(g * I[:, units], axis=0)[:, None] * W[units]      # Eq. 3, rows `units`
    return units, dW / max(float(np.abs(dW).max()), cfg.precision)


def kh_update(W, v, cfg):
    """The normalised update dW / max|dW| as a dense (n_hidden, n_in) array (zero on untouched rows)."""
    units, dW_units = kh_sparse_update(W, v, cfg)
    dW = np.zeros_like(W)
    dW[units] = dW_units
    return dW


def kh_step(W, v, eps, cfg):
    """W <- W + eps dW / max|dW| for one minibatch, in place ([7] notebook)."""
    units, dW = kh_sparse_update(W, v, cfg)
    W[units] += eps * dW
    return W


def kh_eps(epoch, cfg):
    """Learning rate of unsupervised epoch `epoch` (0-based): eps0 (1 - epoch / N_ep) ([7] notebook)."""
    return cfg.eps0 * (1.0 - epoch / cfg.epochs_unsup)


def kh_epoch(W, x, perm, epoch, cfg, progress=None):
    """Unsupervised epoch `epoch` of the rule on the images x in the order perm, W in place; returns
    eps and the median Lebesgue-p norm of the rows (1 once a unit has converged, [7] Eq. 3)."""
    eps = kh_eps(epoch, cfg)
    for i in range(0, len(perm), cfg.batch_unsup):
        batch = perm[i:i + cfg.batch_unsup]
        kh_step(W, x[batch], eps, cfg)
        if progress:
            progress(len(batch))
    norms = np.sum(np.abs(W.astype(np.float64)) ** cfg.p, axis=1) ** (1 / cfg.p)
    return eps, float(np.median(norms))


def kh_hidden(W, x, cfg):
    """Rectified polynomial units h_mu = max(sum_i W_mu,i v_i, 0)^n (B, n_hidden) ([7], top layer).

    The classifier reads the plain dot product, not the Lebesgue-p current of the learning rule."""
    return np.maximum(x @ W.T, 0) ** cfg.n


def kh_top_loss(S, h, t, cfg):
    """Batch mean of C = sum_alpha |c_alpha - t_alpha|^m with c = tanh(beta S h), and dC/dS (n_out, n_hidden).

    t holds the targets in {-1, +1} ([7], supervised top layer)."""
    c = np.tanh(cfg.beta * (h @ S.T))                        # c_alpha = tanh(beta sum_mu S_alpha,mu h_mu)
    diff = c - t
    C = float(np.mean(np.sum(np.abs(diff) ** cfg.m, axis=1)))
    dC_dc = cfg.m * np.abs(diff) ** (cfg.m - 1) * np.sign(diff) / len(h)
    dS = (dC_dc * cfg.beta * (1 - c * c)).T @ h              # chain rule through tanh
    return C, dS


def kh_top_init(n_out, cfg):
    """Top-layer weights S (n_out, n_hidden) start at zero; the problem is convex enough in S alone."""
    return np.zeros((n_out, cfg.n_hidden), cfg.dtype)


def kh_predict(S, h):
    """Class predictions: argmax_alpha c_alpha = argmax of S h, since tanh is increasing."""
    return (h @ S.T).argmax(axis=1)


PLAUSIBILITY["kh"] = {
    "exact_gradients": ("no", "the hidden layer learns without labels, by competition [7]"),
    "no_weight_transport": ("yes", "no error reaches the hidden layer"),
    "no_separate_pathways": ("yes", "no feedback pathway: the hidden layer's learning is local"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("no", "no feedback weights"),
    "linear_stabilisation": ("no", "no error signal to approximate"),
    "explicit_error_representation": ("no", "only the top layer's delta rule sees an error"),
    "backward_steps": ("0", "the hidden layer never waits for an error"),
}


# ---- Equilibrium propagation ------------------------------------------------------------------
# Scellier & Bengio (2017) [8]. Reference code: bscellier/Towards-a-Biologically-Plausible-Backprop
# (Theano). States s_l of the layers l = 1..L
# (hidden and output), x clamped; rho is the hard sigmoid. The states stay in [0, 1], where rho(s) = s
# and rho'(s) = 1 (also at the edges, as the reference code's clip gradient), so E is a quadratic there
# and the state dynamics below are projected gradient descent on it.
# Cost convention: this code uses the paper's C = 1/2 ||y - d||^2. The reference code's cost has no 1/2
# (model.py: ((y - d) ** 2).sum), so its beta = 0.5 (net 1) nudges exactly as the paper's beta = 1, and
# its update (E^beta - E^0) / beta, divided by 0.5, is twice the paper formula's: the published runs are
# beta = 2 beta_code and alpha = 2 alpha_code here (net 1: beta 1, alphas 0.2, 0.1).

def check_layers(rule, sizes, name, rates, hidden_example, rates_example):
    """ValueError unless sizes are positive with at least one hidden layer and `rates` holds one positive
    learning rate per weight layer (EqPropConfig, MicrocircuitConfig)."""
    if len(sizes) < 3 or any(int(n) != n or n <= 0 for n in sizes):
        raise ValueError(f"sizes={sizes}: {rule} needs positive layer sizes and at least one hidden layer "
                         f"(e.g. --hidden {hidden_example})")
    if len(rates) != len(sizes) - 1 or not all(r > 0 for r in rates):
        raise ValueError(f"{name}={rates}: give one positive learning rate per weight layer "
                         f"({len(sizes) - 1} for sizes {sizes}), e.g. --set {name}={rates_example}")


def next_decay(params, t_half):
    """1 / (1 + t / t_half) for the minibatch about to be learned, t = params["t"] minibatches so far
    (1 when t_half = 0); counts the minibatch. The optimizers (Config.t_half), EqProp and the microcircuit
    anneal their rates with it."""
    decay = 1.0 / (1.0 + params["t"] / t_half) if t_half else 1.0
    params["t"] += 1
    return decay


@dataclass(frozen=True)
class EqPropConfig:
    """Equilibrium-propagation network; defaults are [8] Table 2's 784-500-10 row in the paper's
    cost convention C = 1/2 ||y - d||^2 (the reference code's beta and alphas doubled)."""
    sizes: tuple = (784, 500, 10)   # layer widths, input first
    n_free: int = 20                # free-phase iterations per minibatch (Table 2: 20 / 100 / 500)
    n_clamped: int = 4              # weakly clamped iterations (Table 2: 4 / 6 / 8)
    epsilon: float = 0.5            # step of the state dynamics s <- clip(s - epsilon dF/ds, 0, 1)
    beta: float = 1.0               # clamping factor (Table 2; the reference code's 0.5 for net 1 with its
                                    #   cost without the 1/2 nudges the same)
    alphas: tuple = (0.2, 0.1)      # learning rate of W_l, b_l, bottom layer first: Table 2's 0.1, 0.05 as
                                    #   the reference code applies them (its update is divided by its
                                    #   beta 0.5), in this code's convention
    batch: int = 20                 # minibatch (reference code)
    random_sign: bool = True        # flip the sign of beta at random for every minibatch (paper, 3.3)
    n_free_eval: int = 100          # free iterations from s = 0 when predicting (no persistent particle)
    t_half: int = 0                 # alphas divided by 1 + t / t_half after t minibatches (0: constant, as
                                    #   the paper)
    dtype: str = "float32"

    def __post_init__(self):
        check_layers("equilibrium propagation", self.sizes, "alphas", self.alphas, "500", "0.1,0.05")
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon={self.epsilon}: the state step must be in (0, 1] (paper 0.5)")
        if self.beta == 0:
            raise ValueError("beta=0: the clamped phase would equal the free phase; use e.g. beta=1")
        if min(self.n_free, self.n_clamped, self.n_free_eval, self.batch) <= 0:
            raise ValueError(f"n_free={self.n_free}, n_clamped={self.n_clamped}, n_free_eval="
                             f"{self.n_free_eval}, batch={self.batch}: must be positive integers")
        if self.t_half < 0:
            raise ValueError(f"t_half={self.t_half}: must be >= 0 (0 keeps the learning rates constant)")


# Scellier's Table 2 [8]: hidden layers -> (n_free, n_clamped, beta, alphas); epsilon 0.5. Beta
# and alphas are those of the reference code's runs (train_model.py: beta 0.5 / 1 / 1, alphas as Table 2)
# in this code's C = 1/2 ||y - d||^2: beta and alphas doubled (see the note above). On MNIST's
# validation split the 784-500-10 row reaches 2.47 % (epoch 7 of 25; the literal Table 2 alphas 0.1,
# 0.05: 3.02 %); --set alphas=0.8,0.4 t_half=5000 reaches 2.33 % (epoch 7 of 20; test 2.28 %), but
# with --seed 1 it first stalls at chance for 3 epochs and reaches 2.54 % (test 2.52 %).
EQPROP_TABLE2 = {
    (500,): dict(n_free=20, n_clamped=4, beta=1.0, alphas=(0.2, 0.1)),
    (500, 500): dict(n_free=100, n_clamped=6, beta=2.0, alphas=(0.8, 0.2, 0.02)),
    (500, 500, 500): dict(n_free=500, n_clamped=8, beta=2.0, alphas=(0.256, 0.064, 0.016, 0.004)),
}


def rho(s):
    """Hard sigmoid rho(s) = min(max(s, 0), 1)."""
    return np.clip(s, 0.0, 1.0)


def eqprop_init(cfg, rng):
    """Glorot-uniform W_l (n_l, n_(l-1)) and zero b_l, as the reference code."""
    W, b = [], []
    for n_in, n_out in zip(cfg.sizes[:-1], cfg.sizes[1:]):
        r = np.sqrt(6.0 / (n_in + n_out))
        W.append(uniform(rng, r, (n_out, n_in), cfg))
        b.append(np.zeros(n_out, cfg.dtype))
    return {"W": W, "b": b, "t": 0}                         # t: minibatches seen (for cfg.t_half)


def eqprop_zero_state(params, n, dtype="float32"):
    """States s_1..s_L of n examples, all zero (the start of a persistent particle)."""
    return [np.zeros((n, W.shape[0]), dtype) for W in params["W"]]


def energy(params, x, s):
    """Hopfield-like energy per example (B,) [8]:

    E = 1/2 sum_l ||rho(s_l)||^2 - sum_l rho(s_l) W_l rho(s_(l-1)) - sum_l b_l rho(s_l),  s_0 = x."""
    layers = [x] + list(s)
    E = 0.5 * sum(np.sum(rho(u) ** 2, axis=1) for u in s)
    for l, (W, b) in enumerate(zip(params["W"], params["b"])):
        E = E - np.sum((rho(layers[l]) @ W.T) * rho(layers[l + 1]), axis=1) - rho(layers[l + 1]) @ b
    return E


def cost(s, d):
    """C = 1/2 ||y - d||^2 per example (B,), y = s_L the output state [8]."""
    return 0.5 * np.sum((s[-1] - d) ** 2, axis=1)


def relax(params, x, s, n_iter, epsilon, beta=0.0, d=None):
    """n_iter steps of s_l <- clip(s_l - epsilon dF/ds_l, 0, 1) on every layer at once; F = E + beta C.

    dE/ds_l = s_l - (W_l rho(s_(l-1)) + b_l + W_(l+1)^T rho(s_(l+1))): each layer is pulled towards
    the input it gets from both neighbours; beta dC/dy = beta (y - d) nudges the output towards d.
    Returns the new states (a new list); the input drive W_1 x + b_1 is computed once."""
    W, b, L = params["W"], params["b"], len(params["W"])
    bottom = x @ W[0].T + b[0]                               # (B, n_1), constant during the phase
    for _ in range(n_iter):
        r = [rho(u) for u in s]
        new = []
        for l in range(L):
            drive = bottom if l == 0 else r[l - 1] @ W[l].T + b[l]
            if l < L - 1:
                drive = drive + r[l + 1] @ W[l + 1]          # top-down: the same weights, transposed
            dF = s[l] - drive                                # dE/ds_l
            if l == L - 1 and beta != 0:
                dF = dF + beta * (s[l] - d)                  # beta dC/dy: the weak clamping
            new.append(rho(s[l] - epsilon * dF))
        s = new
    return s


def eqprop_gradient(params, x, s_free, s_clamped, beta):
    """Contrastive estimate of -dJ/dW_l and -dJ/db_l, batch mean ([8] learning rule):

    dW_l = 1/beta (rho(s^beta_l)^T rho(s^beta_(l-1)) - rho(s^0_l)^T rho(s^0_(l-1))), J = C at the free
    fixed point. For beta -> 0 and settled phases it is the exact gradient (Scellier 2017, Theorem 1)."""
    B = len(x)
    l0, lb = [x] + list(s_free), [x] + list(s_clamped)
    dW = [(rho(lb[l + 1]).T @ rho(lb[l]) - rho(l0[l + 1]).T @ rho(l0[l])) / (beta * B)
          for l in range(len(params["W"]))]
    db = [(rho(lb[l + 1]) - rho(l0[l + 1])).sum(axis=0) / (beta * B) for l in range(len(params["W"]))]
    return dW, db


def eqprop_step(params, x, d, s, cfg, rng):
    """One minibatch: free phase from the particles s, weakly clamped phase from its end, update.

    Returns (the new free states, to store back as persistent particles; the batch-mean cost at the
    free fixed point). The sign of beta is drawn at random if cfg.random_sign (paper, section 3.3);
    the alphas are divided by 1 + t / t_half after t minibatches if cfg.t_half > 0."""
    s_free = relax(params, x, s, cfg.n_free, cfg.epsilon)                      # free phase
    beta = cfg.beta * (rng.choice((-1.0, 1.0)) if cfg.random_sign else 1.0)
    s_clamped = relax(params, x, s_free, cfg.n_clamped, cfg.epsilon, beta, d)  # weakly clamped phase
    dW, db = eqprop_gradient(params, x, s_free, s_clamped, beta)
    decay = next_decay(params, cfg.t_half)
    for W, b, gW, gb, alpha in zip(params["W"], params["b"], dW, db, cfg.alphas):
        W += decay * alpha * gW                              # per-layer learning rates alpha_l
        b += decay * alpha * gb
    return s_free, float(np.mean(cost(s_free, d)))


def eqprop_predict(params, x, cfg):
    """argmax of the output state at the free fixed point reached from s = 0 ([8]: no softmax)."""
    def classify(xc):
        return relax(params, xc, eqprop_zero_state(params, len(xc), cfg.dtype), cfg.n_free_eval,
                     cfg.epsilon)[-1].argmax(axis=1)
    return in_chunks(classify, x)


PLAUSIBILITY["eqprop"] = {
    "exact_gradients": ("partly", "the gradient in the limit beta -> 0 at settled fixed points ([8] Theorem 1)"),
    "no_weight_transport": ("no", "top-down input uses W_(l+1)^T, the bottom-up synapses themselves (symmetry)"),
    "no_separate_pathways": ("yes", "the same units carry both phases; no error pathway"),
    "dendritic_integration": ("no", "point units: one compartment sums all the inputs a unit gets"),
    "separate_weights_learned": ("no", "no separate feedback weights"),
    "linear_stabilisation": ("yes", "weak clamping: the nudge is a first-order (small beta) effect [8]"),
    "explicit_error_representation": ("no", "the error is the difference between two phases' activities"),
    "backward_steps": ("L", "the nudge spreads one layer per relaxation step of the clamped phase"),
}


# ---- Dendritic cortical microcircuits ---------------------------------------------------------
# Sacramento, Ponte Costa, Bengio & Senn (2018) [9]. Pyramidal neurons of layers k = 1..N
# have a soma u_k, a basal dendrite v_B,k (bottom-up input) and, below the output, an apical dendrite
# v_A,k (top-down input B_k r_(k+1) plus lateral interneurons W^PI_k r^I_k). Interneurons of layer k
# predict the layer above: their dendrite v^I_k = W^IP_k r_k + c_k. Rates r = phi(u), phi logistic.
# MNIST uses the steady state ([9] section 3.4): layers set to their bottom-up predictions, the
# output nudged to its target, then one sweep down. Every steady state below is the fixed point of the
# paper's somatic ODEs with the noise left out, e.g. for a hidden pyramidal soma
#     0 = -g_lk u + g_B (v_B - u) + g_A (v_A - u)  =>  u = v^_B + lambda_A v_A,
#     v^_B = g_B / (g_lk + g_B + g_A) v_B,   lambda_A = g_A / (g_lk + g_B + g_A).
# The nudging currents g_som (target - u) (output; interneurons towards u_(k+1)) give convex mixtures
# u = (1 - lambda) prediction + lambda target with lambda = g_som / (g_lk + g_B or g_D + g_som); with the
# paper's conductance form of the output teacher, g_exc + g_inh = g_som, the same mixture results.
# Departures, each chosen on MNIST's validation split (the paper's MNIST settings are in its supplement,
# not consulted here): W^PI learns (Eq. 9) instead of staying fixed, the feedback B_k is drawn wider
# than W_k (B_gain), and the learning rates decay as 1 / (1 + t / t_half).

# Default learning rates etas of the bottom-up weights, per number of hidden layers; microcircuit_defaults
# picks the row for a network's depth. The paper's MNIST rates are in its supplement, not consulted here,
# so both rows were chosen on MNIST's validation split with this code (other settings at their defaults).
MICROCIRCUIT_ETAS = {
    1: (2.0, 0.1),            # 784-500-10: chosen on the validation split, this code. Val error after
                              #   3 epochs on 50,000 images (mean of seeds 0-2) for first rate 1 / 2 / 3 /
                              #   4, output rate 0.1: 3.35 / 2.96 / 3.05 / 2.91 %; output rate 0.1 beat
                              #   0.03, 0.05 and 0.2 wherever tried with a first rate >= 0.1 (0.05-6,
                              #   seed 0). 2 sits in the flat optimum at half the step of 4; after 10
                              #   epochs 2.24 % (4: 2.14 %). One epoch on 10,000 images: 9.5 %
    2: (0.5, 0.1, 0.1),       # 784-500-500-10, the paper's network: see MicrocircuitConfig.etas
}


def microcircuit_defaults(sizes):
    """MicrocircuitConfig keyword arguments for pyramidal layer widths `sizes` (input first):
    {"sizes": sizes, "etas": MICROCIRCUIT_ETAS[number of hidden layers]}. Other depths have no default
    rates, and only "sizes" is returned: MicrocircuitConfig then asks for etas by name.
        cfg = MicrocircuitConfig(**microcircuit_defaults((784, 500, 10)))"""
    sizes = tuple(sizes)
    etas = MICROCIRCUIT_ETAS.get(len(sizes) - 2)
    return {"sizes": sizes} if etas is None else {"sizes": sizes, "etas": etas}


@dataclass(frozen=True)
class MicrocircuitConfig:
    """Steady-state microcircuit for classification [9]; conductances of miyosuda/dendritic_bp, option.py
    (set there for the regression and association tasks; the paper's MNIST values are in its supplement)."""
    sizes: tuple = (784, 500, 500, 10)   # pyramidal layer widths, input first (paper MNIST network)
    g_lk: float = 0.1               # leak conductance
    g_B: float = 1.0                # basal -> soma
    g_A: float = 0.8                # apical -> soma
    g_D: float = 1.0                # interneuron dendrite -> soma
    g_som: float = 0.8              # nudging conductance (output teacher; interneurons towards layer k+1)
    w_init: float = 4.0             # W_k, B_k ~ U(+-w_init sqrt(6 / (fan_in + fan_out))): Glorot & Bengio
                                    #   (2010) advise 4 for logistic units; with 1 the rates of the second
                                    #   hidden layer hardly vary between digits and nothing is learned
    B_gain: float = 8.0             # B_k (and W^PI_k = -B_k) drawn B_gain times wider than W. B sets the
                                    #   size of every hidden error (the apical potential is B_k times the
                                    #   top-down rate error) and, unlike a larger eta, leaves the stability
                                    #   of each layer's own update alone. MNIST val error after 3 epochs at
                                    #   constant rates: 16.7 % (B_gain 1; etas 4, 0.1, 0.1), 5.3 % (3; 1.33,
                                    #   0.1, 0.1), 3.8 % (5; 0.8, 0.1, 0.1), 3.4 % (8; 0.5, 0.1, 0.1). The
                                    #   paper's scale is in its supplement
    r_low: float = 0.1              # target rate of the wrong classes (paper: targets 0.1 / 0.8)
    r_high: float = 0.8             # target rate of the right class
    etas: tuple = MICROCIRCUIT_ETAS[2]  # learning rates of the bottom-up weights W_k, bottom first; one per
                                    #   weight layer (other depths: microcircuit_defaults). Chosen on
                                    #   MNIST's validation split (3-epoch grid; the paper's are in its
                                    #   supplement). The top two are bounded by the common mode of
                                    #   the rates (all positive, ||r||^2 ~ n/4): near 0.1 one step already
                                    #   moves the output most of the way to its minibatch's targets (the
                                    #   interneurons learn at the matching rate); 0.2 or 0.3 for the middle
                                    #   layer learned worse in the grid. The bottom layer's error passes
                                    #   through two apical stages, so it takes a larger rate
    ip_factor: float = 1.0          # eta_IP_k as a multiple of the rate that keeps interneurons tracking
                                    #   W_(k+1) to first order (microcircuit_ip_rates); 0 freezes W^IP
    eta_PI: float = 2.5             # W^PI_k learns at eta_PI / n_(k+1) (Eq. 9; n_(k+1) interneurons of layer
                                    #   k, so that the gain eta_PI mean(r^I^2) stays below 1 for any width).
                                    #   0 fixes W^PI, as in [9]'s MNIST run; then the
                                    #   interneurons' second-order tracking error of the layer above (phi is
                                    #   not linear) accumulates as an apical potential without a teacher,
                                    #   a false error that saturates the second hidden layer within 2 epochs
                                    #   (MNIST val error after 2 epochs with etas 0.03, 0.03, 0.1 and B_gain
                                    #   1: 74 % with W^PI fixed, 15 % with W^PI plastic)
    batch: int = 10                 # weight changes averaged over minibatches of 10 images (paper)
    t_half: int = 50_000            # every learning rate is divided by 1 + t / t_half after t minibatches
                                    #   (0: constant rates; 50,000 = 10 MNIST epochs at batch 10). Each step
                                    #   refits the output to its last few minibatches (the common mode of
                                    #   r); decaying rates average that noise away
    dtype: str = "float32"

    def __post_init__(self):
        n_hidden = len(self.sizes) - 2
        if n_hidden >= 1 and len(self.etas) != n_hidden + 1:
            hint = (f"the default for {n_hidden} hidden layer(s) is etas={MICROCIRCUIT_ETAS[n_hidden]} "
                    "(baselines.microcircuit_defaults(sizes))" if n_hidden in MICROCIRCUIT_ETAS else
                    f"default rates exist only for {' or '.join(map(str, MICROCIRCUIT_ETAS))} hidden layers")
            raise ValueError(f"etas={self.etas}: give one positive learning rate per weight layer, "
                             f"{n_hidden + 1} for sizes {self.sizes}; {hint}. E.g. --set etas="
                             + ",".join(["0.5"] + ["0.1"] * n_hidden))
        check_layers("the microcircuit", self.sizes, "etas", self.etas, "500 500", "0.5,0.1,0.1")
        if min(self.g_lk, self.g_B, self.g_A, self.g_D, self.w_init, self.B_gain) <= 0 or self.g_som < 0:
            raise ValueError(f"conductances g_lk={self.g_lk}, g_B={self.g_B}, g_A={self.g_A}, g_D={self.g_D}, "
                             f"w_init={self.w_init} and B_gain={self.B_gain} must be positive and "
                             f"g_som={self.g_som} >= 0")
        if not 0 < self.r_low < self.r_high < 1:
            raise ValueError(f"r_low={self.r_low}, r_high={self.r_high}: target rates of the logistic "
                             "units need 0 < r_low < r_high < 1 (paper 0.1, 0.8)")
        if self.ip_factor < 0 or self.eta_PI < 0 or self.batch <= 0 or self.t_half < 0:
            raise ValueError(f"ip_factor={self.ip_factor}, eta_PI={self.eta_PI}, batch={self.batch}, "
                             f"t_half={self.t_half}: learning rates and t_half must be >= 0, the batch "
                             "positive")

    @property
    def att(self):
        """Basal attenuation per pyramidal layer 1..N: g_B / (g_lk + g_B + g_A), output without g_A."""
        N = len(self.sizes) - 1
        return [self.g_B / (self.g_lk + self.g_B + (self.g_A if k < N else 0.0)) for k in range(1, N + 1)]

    @property
    def att_I(self):
        return self.g_D / (self.g_lk + self.g_D)             # interneuron dendritic attenuation

    @property
    def lambda_A(self):
        return self.g_A / (self.g_lk + self.g_B + self.g_A)  # apical share of a hidden soma

    @property
    def lambda_out(self):
        return self.g_som / (self.g_lk + self.g_B + self.g_som)   # output nudging

    @property
    def lambda_I(self):
        return self.g_som / (self.g_lk + self.g_D + self.g_som)   # interneuron nudging


def phi(u):
    return sigmoid(u)                                        # logistic rate function


def microcircuit_init(cfg, rng):
    """Random bottom-up W_k, b_k and top-down B_k, and interneurons in the self-predicting state:

    W^IP_k = (att_(k+1) / att_I) W_(k+1), c_k likewise, so that v^I_k = v^_B,(k+1) (interneurons copy the
    layer above), and W^PI_k = -B_k, so that v_A,k = B_k (r_(k+1) - r^I_k) = 0 without a teacher."""
    W, b, Bk = [], [], []
    sizes = cfg.sizes
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = cfg.w_init * np.sqrt(6.0 / (n_in + n_out))
        W.append(uniform(rng, r, (n_out, n_in), cfg))
        b.append(np.zeros(n_out, cfg.dtype))
    for k in range(1, len(sizes) - 1):                       # hidden layers 1..N-1, B_k (n_k, n_(k+1))
        r = cfg.B_gain * cfg.w_init * np.sqrt(6.0 / (sizes[k] + sizes[k + 1]))
        Bk.append(uniform(rng, r, (sizes[k], sizes[k + 1]), cfg))
    ratio = [cfg.att[k] / cfg.att_I for k in range(1, len(W))]
    W_IP = [(q * W[k]).astype(cfg.dtype) for k, q in zip(range(1, len(W)), ratio)]
    c_IP = [(q * b[k]).astype(cfg.dtype) for k, q in zip(range(1, len(W)), ratio)]
    W_PI = [-B for B in Bk]
    return {"W": W, "b": b, "B": Bk, "W_IP": W_IP, "c_IP": c_IP, "W_PI": W_PI, "t": 0}   # t: minibatches seen


def microcircuit_ip_rates(cfg):
    """eta_IP_k that makes W^IP_k follow (att_(k+1) / att_I) W_(k+1) to first order:
    dW^IP ~ eta_IP lambda_I phi' (u_(k+1) - v^I) r_k^T and dW_(k+1) ~ eta_(k+1) phi' (u_(k+1) - v^_B) r_k^T."""
    return [cfg.ip_factor * cfg.etas[k] * cfg.att[k] / (cfg.att_I * cfg.lambda_I) if cfg.lambda_I > 0 else 0.0
            for k in range(1, len(cfg.etas))]


def microcircuit_forward(params, x, cfg):
    """Bottom-up sweep: v_B,k, the prediction v^_B,k = att_k v_B,k = u_k, rates, interneuron predictions."""
    r, vB_hat, vI_hat = [x], [], []
    for k, (W, b) in enumerate(zip(params["W"], params["b"])):
        vB_hat.append(cfg.att[k] * (r[-1] @ W.T + b))        # v^_B,k = att_k (W_k r_(k-1) + b_k)
        r.append(phi(vB_hat[-1]))                            # u_k = v^_B,k (no apical input yet)
    for k in range(len(params["W_IP"])):                     # interneurons of layer k+1 (0-based k)
        vI_hat.append(cfg.att_I * (r[k + 1] @ params["W_IP"][k].T + params["c_IP"][k]))
    return {"r": r, "vB_hat": vB_hat, "vI_hat": vI_hat}


def microcircuit_teach(params, fwd, u_trgt, cfg):
    """Teaching steady state: nudge the output to u_trgt, then sweep down ([9] section 3.4, MNIST).

    u_N   = (1 - lambda_out) v^_B,N + lambda_out u_trgt                       (output soma)
    u^I_k = (1 - lambda_I) v^I_k + lambda_I u_(k+1)                          (interneurons)
    v_A,k = B_k phi(u_(k+1)) + W^PI_k phi(u^I_k)                              (apical dendrite)
    u_k   = v^_B,k + lambda_A v_A,k                                           (hidden soma)
    Basal inputs keep their bottom-up values. u_trgt None means no teacher (lambda_out = 0).
    Lists are 0-based: u[k] is layer k+1; uI[k], vA[k] belong to hidden layer k+1."""
    N = len(params["W"])
    u = [None] * N
    lam = cfg.lambda_out if u_trgt is not None else 0.0
    u[N - 1] = (1 - lam) * fwd["vB_hat"][N - 1] + (lam * u_trgt if lam else 0.0)
    uI, vA = [None] * (N - 1), [None] * (N - 1)
    for k in range(N - 2, -1, -1):
        uI[k] = (1 - cfg.lambda_I) * fwd["vI_hat"][k] + cfg.lambda_I * u[k + 1]
        vA[k] = phi(u[k + 1]) @ params["B"][k].T + phi(uI[k]) @ params["W_PI"][k].T
        u[k] = fwd["vB_hat"][k] + cfg.lambda_A * vA[k]
    return {"u": u, "uI": uI, "vA": vA}


def microcircuit_updates(params, fwd, teach, cfg):
    """Dendritic-prediction plasticity ([9] Eqs. 7-10), batch means:

    dW_k    = eta_k    (phi(u_k) - phi(v^_B,k)) r_(k-1)^T      bottom-up, presynaptic rates bottom-up
    dW^IP_k = eta_IP_k (phi(u^I_k) - phi(v^I_k)) r_k^T         interneurons learn to predict layer k+1
    dW^PI_k = eta_PI / n_(k+1) (0 - v_A,k^free) r^I_k^T        silences the apical dendrite (v_rest = 0)
    The W^PI rule uses the apical potential without a teacher. Returns dicts of updates (not applied)."""
    r, B = fwd["r"], len(fwd["r"][0])
    out = {"W": [], "b": [], "W_IP": [], "c_IP": [], "W_PI": []}
    for k, eta in enumerate(cfg.etas):
        err = (phi(teach["u"][k]) - phi(fwd["vB_hat"][k])) / B          # (B, n_k)
        out["W"].append(eta * err.T @ r[k])                             # [9] Eq. 7 (bottom-up)
        out["b"].append(eta * err.sum(axis=0))                          # threshold: an input fixed at 1
    for k, eta in enumerate(microcircuit_ip_rates(cfg)):
        err = (phi(teach["uI"][k]) - phi(fwd["vI_hat"][k])) / B
        out["W_IP"].append(eta * err.T @ r[k + 1])                      # Eq. 8 (pyramidal -> interneuron)
        out["c_IP"].append(eta * err.sum(axis=0))
        if cfg.eta_PI > 0:
            rI = phi(fwd["vI_hat"][k])                                  # interneuron rates, no teacher
            vA_free = r[k + 2] @ params["B"][k].T + rI @ params["W_PI"][k].T
            eta_PI = cfg.eta_PI / rI.shape[1]                           # per population: / n_(k+1)
            out["W_PI"].append(eta_PI * (-vA_free / B).T @ rI)          # Eq. 9 (interneuron -> pyramidal)
        else:
            out["W_PI"].append(None)
    return out


def microcircuit_targets(y, n_out, cfg):
    """Somatic target potentials u_trgt = phi^-1(r_trgt) for rates r_high (label) and r_low (others)."""
    rate = np.full((len(y), n_out), cfg.r_low, cfg.dtype)
    rate[np.arange(len(y)), y] = cfg.r_high
    return np.log(rate / (1 - rate)).astype(cfg.dtype), rate


def microcircuit_step(params, x, u_trgt, r_trgt, cfg):
    """One minibatch: bottom-up sweep, teaching sweep, plasticity, every rate divided by 1 + t / t_half
    (cfg.t_half > 0). Returns the batch-mean loss 1/2 ||phi(u_N) - r_trgt||^2 of the bottom-up output
    (before the update)."""
    fwd = microcircuit_forward(params, x, cfg)
    teach = microcircuit_teach(params, fwd, u_trgt, cfg)
    upd = microcircuit_updates(params, fwd, teach, cfg)
    decay = next_decay(params, cfg.t_half)
    for key in ("W", "b", "W_IP", "c_IP", "W_PI"):
        for p, d in zip(params[key], upd[key]):
            if d is not None:
                p += decay * d
    return float(0.5 * np.mean(np.sum((fwd["r"][-1] - r_trgt) ** 2, axis=1)))


def microcircuit_predict(params, x, cfg):
    """argmax of the bottom-up output potentials."""
    return in_chunks(lambda xc: microcircuit_forward(params, xc, cfg)["vB_hat"][-1].argmax(axis=1), x)


PLAUSIBILITY["microcircuit"] = {
    "exact_gradients": ("no", "with fixed random B_k it approximates feedback alignment, not BP [9]"),
    "no_weight_transport": ("yes", "B_k is fixed and random; interneurons learn by local plasticity"),
    "no_separate_pathways": ("yes", "errors live in the apical dendrites of the same pyramidal neurons"),
    "dendritic_integration": ("yes", "basal and apical compartments; the apical potential is the error [9]"),
    "separate_weights_learned": ("yes", "W^IP and W^PI learn by local rules ([9] Eqs. 8-9)"),
    "linear_stabilisation": ("yes", "the match to BP holds to first order in the nudging (weak feedback) [9]"),
    "explicit_error_representation": ("yes", "the apical potential v_A,k is a signed error"),
    "backward_steps": ("L", "the teaching signal sweeps down one layer at a time ([9] section 3.4)"),
}
