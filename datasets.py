"""datasets.py -- MNIST, Fashion-MNIST, CIFAR-10 and the 8x8 digits as NumPy arrays.

    data = load("mnist")                  # {"train": (x, y), "val": (x, y), "test": (x, y)}
    x, y = data["train"]                  # x (50000, 784) float32 in [0, 1], y (50000,) int64

Arrays: x is float32, C-contiguous, one flattened image per row, pixels / 255 (digits: / 16);
y is int64 class labels 0-9. CIFAR-10 rows are 3072 values in the canonical channel-major order,
1024 red, then 1024 green, then 1024 blue (each 32x32, row-major); an image is
x[i].reshape(3, 32, 32).transpose(1, 2, 0).

Validation split (fixed, never shuffled): the LAST n_valid training images. Defaults: MNIST and
Fashion-MNIST 10,000 (train 50,000), CIFAR-10 5,000 (train 45,000). Tune on "val", report "test".
n_valid=0 gives the full training set and an empty val, the protocol of the SDNN paper.
digits: scikit-learn's bundled 1,797 images, in their shipped order (classes already cycle 0..9):
the first 1,297 are training (the last 297 of them validation) and the last 500 are test.

Where the files live: <data_dir>/mnist/, <data_dir>/fashion_mnist/ (the four canonical IDX .gz
files each) and <data_dir>/cifar10/ (cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/).
data_dir = the argument, else the environment variable SDNN_DATA, else a per-user cache directory
($XDG_CACHE_HOME/sdnn, default ~/.cache/sdnn). Missing files are downloaded there with urllib from the
official site, then a mirror, into a temporary file that is renamed only once its md5 is right.

Checks: every load verifies each file's md5 (it costs about 0.02-0.04 s for the 10-26 MB archives, so
no stamp files are kept). The md5 may be that of the canonical archive or that of its decompressed
content, so faithful re-compressed copies (e.g. Debian's dataset-fashion-mnist) are accepted; a
CIFAR-10 archive that is not byte-identical is accepted if every batch inside has its canonical md5.
IDX headers (magic, dimensions, length) and pickled batches (keys, shapes, label range) are checked
as well. Any failure raises DataError naming the file and the fix; wrong arrays are never returned.
Pickles are only opened after their md5 has matched, because unpickling can run code.
"""
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from numbers import Integral

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")
N_VALID = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 5_000, "digits": 297}

# file -> (md5 of the canonical archive, the one torchvision checks; md5 of its decompressed content)
FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
    "cifar10": {"cifar-10-python.tar.gz": ("c58f30108f718f92721af3b95e74349a", None)},  # content: below
}
CIFAR_FOLDER = "cifar-10-batches-py"   # what the archive extracts to
CIFAR_BATCHES = {                      # member -> md5; data_batch_1..5 are training, test_batch is test
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
URLS = {  # tried in order; the file name is appended
    "mnist": ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),  # no official mirror exists
}
IDX_MAGIC = {3: 2051, 1: 2049}  # 0x0803 / 0x0801: type byte 0x08 = uint8, then the number of dimensions
FIX = "delete it and load again to re-download, or replace it with a verified copy"


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or truncated; the message names the file and the fix."""


def data_dir(data_dir=None):
    """Root data directory: the argument, else $SDNN_DATA, else $XDG_CACHE_HOME/sdnn (~/.cache/sdnn)."""
    root = data_dir or os.environ.get("SDNN_DATA")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "sdnn")
    return os.path.abspath(os.path.expanduser(root))


_data_dir = data_dir  # load()'s argument of the same name shadows the function


def load(name, data_dir=None, n_valid=None, download=True):
    """Load a dataset as float32 images in [0, 1] and int64 labels, split into train / val / test.

    Parameters
    ----------
    name : one of DATASETS.
    data_dir : root directory holding <name>/ (default: see data_dir()). Not used by "digits".
    n_valid : size of the validation split, the LAST n_valid training images (default N_VALID[name]);
        0 gives the whole training set and an empty val of shape (0, D).
    download : fetch missing files from the official site or its mirror (needs internet).

    Returns
    -------
    {"train": (x, y), "val": (x, y), "test": (x, y)}, x (N, D) float32 C-contiguous, y (N,) int64.
    D = 784 (MNIST, Fashion-MNIST), 3072 (CIFAR-10, channel-major R, G, B), 64 (digits).

    Raises ValueError for an unknown name or n_valid, DataError for missing or corrupt files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        x_train, y_train, x_test, y_test = _digits()
    else:
        folder = os.path.join(_data_dir(data_dir), name)
        read = _cifar10 if name == "cifar10" else _idx_dataset
        x_train, y_train, x_test, y_test = read(folder, name, download)

    n_valid = N_VALID[name] if n_valid is None else n_valid
    n = len(x_train)
    if isinstance(n_valid, bool) or not isinstance(n_valid, Integral) or not 0 <= n_valid < n:
        raise ValueError(f"n_valid={n_valid!r} for {name}: must be an integer in [0, {n - 1}] "
                         f"(0 = no validation split; the {n} training images must keep at least one)")
    n_train = n - n_valid  # row slices of a C-contiguous array stay C-contiguous
    return {"train": (x_train[:n_train], y_train[:n_train]),
            "val": (x_train[n_train:], y_train[n_train:]),
            "test": (x_test, y_test)}


# ------------------------------------------------------------------------ readers, one per format

def _digits():
    """scikit-learn's 8x8 digits, pixels 0..16 scaled to [0, 1]; first 1,297 train, last 500 test."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)  # (1797, 64)
    y = digits.target.astype(np.int64)
    return x[:1297], y[:1297], x[1297:], y[1297:]


def _idx_dataset(folder, name, download):
    """MNIST or Fashion-MNIST: the four IDX .gz files, verified, then parsed."""
    _ensure(folder, name, download, verify=lambda path, fname: _verified_gzip(path, *FILES[name][fname]))
    arrays = {}
    for fname, md5s in FILES[name].items():
        path = os.path.join(folder, fname)
        n_items = 60_000 if fname.startswith("train") else 10_000
        arrays[fname] = _parse_idx(_verified_gzip(path, *md5s), 3 if "images" in fname else 1, n_items, path)
    x_train, x_test = (_scale(arrays[f"{s}-images-idx3-ubyte.gz"]) for s in ("train", "t10k"))
    y_train, y_test = (_labels(arrays[f"{s}-labels-idx1-ubyte.gz"], os.path.join(folder, f"{s}-labels"))
                       for s in ("train", "t10k"))
    return x_train, y_train, x_test, y_test


def _parse_idx(content, ndim, n_items, path):
    """IDX bytes -> uint8 array (n_items, prod(dims)). Header: big-endian uint32 magic, then the dims."""
    header = 4 * (1 + ndim)
    if len(content) < header:
        raise DataError(f"{path}: only {len(content)} bytes, too short for an IDX header; {FIX}")
    magic, *dims = np.frombuffer(content, dtype=">u4", count=1 + ndim).tolist()
    expected = [n_items, 28, 28][:ndim]
    if magic != IDX_MAGIC[ndim]:
        raise DataError(f"{path}: bad IDX magic number {magic}, expected {IDX_MAGIC[ndim]}; {FIX}")
    if dims != expected:
        raise DataError(f"{path}: IDX dimensions {dims}, expected {expected}; {FIX}")
    if len(content) != header + np.prod(dims):
        raise DataError(f"{path}: wrong size, {len(content)} bytes where the header needs "
                        f"{header + np.prod(dims)}; {FIX}")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(n_items, -1)


def _cifar10(folder, name, download):
    """CIFAR-10 from the extracted cifar-10-batches-py/ folder if present, else from the tar.gz."""
    extracted = os.path.join(folder, CIFAR_FOLDER)
    if os.path.isdir(extracted):
        missing = [m for m in CIFAR_BATCHES if not os.path.isfile(os.path.join(extracted, m))]
        if missing:
            raise DataError(f"{extracted} lacks {', '.join(missing)}; extract the whole "
                            f"cifar-10-python.tar.gz there, or delete the folder and put the archive in {folder}")
        blobs = {}
        for member in CIFAR_BATCHES:
            with open(os.path.join(extracted, member), "rb") as f:
                blobs[member] = f.read()
        _check_cifar_batches(blobs, extracted)
        where = extracted
    else:
        _ensure(folder, name, download, verify=lambda path, fname: _read_cifar_tar(path))
        where = os.path.join(folder, "cifar-10-python.tar.gz")
        blobs = _read_cifar_tar(where)
    train = [_parse_cifar_batch(blobs[f"data_batch_{i}"], f"{where}: data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _parse_cifar_batch(blobs["test_batch"], f"{where}: test_batch")
    x_train = np.concatenate([x for x, _ in train])   # (50000, 3072), R then G then B plane per row
    y_train = np.concatenate([y for _, y in train])
    return _scale(x_train), y_train, _scale(x_test), y_test


def _read_cifar_tar(path):
    """Verified member bytes of a CIFAR-10 archive: canonical archive md5, or every batch canonical."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        # one gunzip call, then an uncompressed tar: about twice as fast as tarfile's streaming "r:gz"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:") as tar:
            blobs = {m: tar.extractfile(f"{CIFAR_FOLDER}/{m}").read() for m in CIFAR_BATCHES}
    except (tarfile.TarError, KeyError, AttributeError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path}: not a complete cifar-10-python.tar.gz ({type(err).__name__}: {err}); "
                        f"{FIX}") from err
    if _md5(raw) != FILES["cifar10"]["cifar-10-python.tar.gz"][0]:   # a faithful re-pack is fine
        _check_cifar_batches(blobs, path)
    return blobs


def _check_cifar_batches(blobs, where):
    """DataError unless every batch has its canonical md5 (checked before unpickling: pickle runs code)."""
    for member, blob in blobs.items():
        if _md5(blob) != CIFAR_BATCHES[member]:
            raise DataError(f"{where}: {member} has md5 {_md5(blob)}, expected {CIFAR_BATCHES[member]}; "
                            f"the file is corrupt or not CIFAR-10: {FIX}")


def _parse_cifar_batch(blob, where):
    """One pickled batch -> (uint8 images (N, 3072), int64 labels (N,)); its md5 was checked."""
    try:
        batch = pickle.loads(blob, encoding="bytes")
        x = np.ascontiguousarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: not a CIFAR-10 python batch ({type(err).__name__}: {err}); {FIX}") from err
    if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise DataError(f"{where}: data {x.shape} and labels {y.shape}, expected (N, 3072) and (N,); {FIX}")
    return x, _labels(y, where)


# ------------------------------------------------------------------------ checks and conversions

def _scale(pixels):
    """uint8 (N, D) -> float32 (N, D) in [0, 1], divided in float32 (so 255 -> exactly 1.0)."""
    x = pixels.astype(np.float32)
    x /= 255
    return x


def _labels(y, where):
    """uint8 or int labels -> int64 (N,), refusing anything outside 0..9."""
    y = y.astype(np.int64).reshape(-1)
    if y.size and not 0 <= y.min() <= y.max() <= 9:
        raise DataError(f"{where}: labels outside 0..9 (min {y.min()}, max {y.max()}); {FIX}")
    return y


def _md5(data):
    return hashlib.md5(data).hexdigest()


def _verified_gzip(path, md5_gz, md5_raw):
    """Decompressed bytes of a .gz file whose archive md5 or content md5 matches; else DataError."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        content = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:   # BadGzipFile is an OSError; truncation an EOFError
        raise DataError(f"{path}: truncated or not a gzip file ({type(err).__name__}: {err}); {FIX}") from err
    if _md5(raw) != md5_gz and _md5(content) != md5_raw:   # content md5 only computed if needed
        raise DataError(f"{path}: md5 mismatch (file {_md5(raw)}, content {_md5(content)}; expected file "
                        f"{md5_gz} or content {md5_raw}), so it is corrupt or not the canonical file; {FIX}")
    return content


# ------------------------------------------------------------------------ download

def _fetch(url, path):
    """Copy `url` to the local file `path` (the tests replace this function: they never use the network)."""
    with urllib.request.urlopen(url, timeout=30) as response, open(path, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)


def _ensure(folder, name, download, verify):
    """Make sure every file of FILES[name] is in `folder`, downloading missing ones; else DataError.

    Each download goes to a temporary file in `folder`, passes `verify(path, fname)`, and only then is
    renamed into place (os.replace is atomic), so an interrupted or corrupt download leaves nothing.
    """
    missing = [f for f in FILES[name] if not os.path.isfile(os.path.join(folder, f))]
    failures, new = [], os.path.abspath(folder)
    while not os.path.exists(os.path.dirname(new)):     # the top folder a download would create
        new = os.path.dirname(new)
    created = not os.path.exists(new)
    for fname in list(missing) if download else []:
        for base in URLS[name]:
            tmp = None
            try:
                os.makedirs(folder, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{fname}.", suffix=".part")
                os.close(fd)
                _fetch(base + fname, tmp)
                verify(tmp, fname)
                os.replace(tmp, os.path.join(folder, fname))
                missing.remove(fname)
                break
            except (OSError, DataError, ValueError) as err:  # URLError and HTTPError are OSErrors
                failures.append(f"{base + fname}: {err}")
            finally:
                if tmp and os.path.exists(tmp):
                    os.remove(tmp)
        if fname in missing:   # no source worked (offline?): do not wait on the other files
            break
    if missing:
        path = os.path.abspath(folder)
        while created and os.path.isdir(path) and not os.listdir(path):   # leave no empty folders behind
            os.rmdir(path)
            if path == new:
                break
            path = os.path.dirname(path)
        why = ("download failed:\n  " + "\n  ".join(failures)) if download else "download=False"
        raise DataError(
            f"{name}: {len(missing)} file(s) missing from {folder}: {', '.join(missing)} ({why}).\n"
            f"Fix: copy them there (from {' or '.join(URLS[name])}"
            + (f", or extract the archive there as {CIFAR_FOLDER}/" if name == "cifar10" else "")
            + f"), or set SDNN_DATA (or pass data_dir=) to a directory that holds {name}/ with these files.")
