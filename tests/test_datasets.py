"""datasets.py: real MNIST / Fashion-MNIST against known facts, synthetic CIFAR-10, the digits split,
and every bad-input path (missing, truncated, corrupt files; bad names and n_valid). Never uses the network."""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.error

import numpy as np
import pytest
from conftest import data_dir_or_skip

import datasets

MNIST_FILES = list(datasets.FILES["mnist"])


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails as it would offline; tests that need one install their own _fetch."""
    def offline(url, path):
        raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(datasets, "_fetch", offline)


@pytest.fixture(scope="module")
def mnist_full():
    return datasets.load("mnist", data_dir_or_skip("mnist"), n_valid=0, download=False)


def mnist_copy(tmp_path, changed=None):
    """tmp_path/mnist with links to the real files, except `changed` = {file name: new bytes}."""
    src = os.path.join(data_dir_or_skip("mnist"), "mnist")
    os.makedirs(tmp_path / "mnist")
    for fname in MNIST_FILES:
        if changed and fname in changed:
            (tmp_path / "mnist" / fname).write_bytes(changed[fname])
        else:
            os.symlink(os.path.join(src, fname), tmp_path / "mnist" / fname)
    return str(tmp_path)


def real_bytes(fname, decompress=True):
    with open(os.path.join(data_dir_or_skip("mnist"), "mnist", fname), "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if decompress else raw


# ------------------------------------------------------------------------ real data, known facts

def test_mnist_matches_known_facts(mnist_full):
    x, y = mnist_full["train"]
    x_test, y_test = mnist_full["test"]
    assert x.shape == (60_000, 784) and x_test.shape == (10_000, 784)
    assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[:100] * 255, np.round(x[:100] * 255))   # pixels are k / 255
    assert y[0] == 5  # the famous first training digit
    np.testing.assert_array_equal(np.bincount(y_test),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    np.testing.assert_array_equal(np.bincount(y),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert mnist_full["val"][0].shape == (0, 784) and mnist_full["val"][1].shape == (0,)


def test_mnist_equals_a_byte_level_twin(mnist_full):
    """Labels and pixels equal a reading of the raw IDX bytes (header of 8 / 16 bytes, no numpy parsing)."""
    labels = real_bytes("t10k-labels-idx1-ubyte.gz")
    images = real_bytes("t10k-images-idx3-ubyte.gz")
    x_test, y_test = mnist_full["test"]
    assert list(y_test[:50]) == list(labels[8:58])
    i = 1234
    assert [round(v * 255) for v in x_test[i]] == list(images[16 + 784 * i: 16 + 784 * (i + 1)])


def test_fashion_mnist_is_balanced():
    data = datasets.load("fashion_mnist", data_dir_or_skip("fashion_mnist"), n_valid=0, download=False)
    (x, y), (x_test, y_test) = data["train"], data["test"]
    assert x.shape == (60_000, 784) and x_test.shape == (10_000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


@pytest.mark.parametrize("n_valid", [None, 123])
def test_validation_split_is_the_last_training_images(mnist_full, n_valid):
    data = datasets.load("mnist", data_dir_or_skip("mnist"), n_valid=n_valid, download=False)
    x_all, y_all = mnist_full["train"]
    n_val = 10_000 if n_valid is None else n_valid
    n_train = 60_000 - n_val
    assert data["train"][0].shape == (n_train, 784) and data["val"][0].shape == (n_val, 784)
    np.testing.assert_array_equal(data["train"][0], x_all[:n_train])
    np.testing.assert_array_equal(data["val"][0], x_all[n_train:])
    np.testing.assert_array_equal(data["val"][1], y_all[n_train:])
    np.testing.assert_array_equal(data["test"][1], mnist_full["test"][1])
    assert data["train"][0].flags.c_contiguous and data["val"][0].flags.c_contiguous


def test_recompressed_copy_is_accepted(tmp_path, mnist_full):
    """A faithful re-compression (other gzip header and level, like Debian's) passes on its content md5."""
    content = real_bytes("t10k-images-idx3-ubyte.gz")
    recompressed = gzip.compress(content, compresslevel=1, mtime=0)
    assert md5(recompressed) != datasets.FILES["mnist"]["t10k-images-idx3-ubyte.gz"][0]
    data = datasets.load("mnist", mnist_copy(tmp_path, {"t10k-images-idx3-ubyte.gz": recompressed}),
                         n_valid=0, download=False)
    np.testing.assert_array_equal(data["test"][0], mnist_full["test"][0])


# ------------------------------------------------------------------------ digits (always available)

def test_digits_split_and_scaling():
    from sklearn.datasets import load_digits
    ref = load_digits()
    data = datasets.load("digits")
    assert [data[s][0].shape for s in ("train", "val", "test")] == [(1000, 64), (297, 64), (500, 64)]
    assert all(data[s][0].dtype == np.float32 and data[s][1].dtype == np.int64 for s in data)
    np.testing.assert_allclose(data["test"][0], ref.data[-500:] / 16, rtol=1e-7)
    np.testing.assert_array_equal(data["val"][1], ref.target[1000:1297])
    assert data["train"][0].max() == 1.0
    full = datasets.load("digits", n_valid=0)
    assert full["train"][0].shape == (1297, 64) and full["val"][0].shape == (0, 64)


# ------------------------------------------------------------------------ synthetic CIFAR-10

def cifar_batches(rng, n=4):
    """Small batches in the canonical pickle format: b'data' uint8 (n, 3072) R, G, B planes, b'labels'."""
    blobs, raw = {}, {}
    for member in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        raw[member] = (data, labels)
        blobs[member] = pickle.dumps({b"batch_label": member.encode(), b"labels": labels, b"data": data,
                                      b"filenames": [b"img%d.png" % i for i in range(n)]}, protocol=2)
    blobs["batches.meta"] = pickle.dumps({b"label_names": [b"airplane", b"automobile"], b"num_vis": 3072})
    return blobs, raw


def write_cifar(tmp_path, blobs, as_tar):
    folder = tmp_path / "cifar10"
    if as_tar:
        folder.mkdir()
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for member, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (folder / "cifar-10-batches-py").mkdir(parents=True)
        for member, blob in blobs.items():
            (folder / "cifar-10-batches-py" / member).write_bytes(blob)
    return str(tmp_path)


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar10_round_trips_with_channel_order(tmp_path, monkeypatch, as_tar):
    rng = np.random.default_rng(0)
    blobs, raw = cifar_batches(rng)
    # put a known colour at pixel (row 2, col 5) of the first training image: R=255, G=0, B=51
    data_1, labels_1 = raw["data_batch_1"]
    data_1[0].reshape(3, 32, 32)[:, 2, 5] = (255, 0, 51)   # a view: edits data_1 in place
    blobs["data_batch_1"] = pickle.dumps({b"labels": labels_1, b"data": data_1})
    monkeypatch.setattr(datasets, "CIFAR_BATCHES", {m: md5(b) for m, b in blobs.items()})
    data = datasets.load("cifar10", write_cifar(tmp_path, blobs, as_tar), n_valid=5, download=False)
    train_parts = [raw[f"data_batch_{i}"] for i in range(1, 6)]
    x_all = np.concatenate([d for d, _ in train_parts]).astype(np.float32) / np.float32(255)
    y_all = np.concatenate([lab for _, lab in train_parts])
    np.testing.assert_array_equal(np.concatenate([data["train"][0], data["val"][0]]), x_all)
    np.testing.assert_array_equal(np.concatenate([data["train"][1], data["val"][1]]), y_all)
    np.testing.assert_array_equal(data["val"][1], y_all[-5:])
    np.testing.assert_array_equal(data["test"][0] * 255, raw["test_batch"][0])
    x = data["train"][0]
    assert x.shape == (15, 3072) and x.dtype == np.float32 and x.flags.c_contiguous
    rgb = x[0].reshape(3, 32, 32).transpose(1, 2, 0)[2, 5] * 255   # the recipe in the module docstring
    np.testing.assert_array_equal(rgb, [255, 0, 51])


def test_cifar10_canonical_archive_md5_skips_batch_check(tmp_path, monkeypatch):
    blobs, _ = cifar_batches(np.random.default_rng(1))
    root = write_cifar(tmp_path, blobs, as_tar=True)
    archive = (tmp_path / "cifar10" / "cifar-10-python.tar.gz").read_bytes()
    monkeypatch.setitem(datasets.FILES, "cifar10", {"cifar-10-python.tar.gz": (md5(archive), None)})
    assert datasets.load("cifar10", root, n_valid=0, download=False)["train"][0].shape == (20, 3072)


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar10_corrupt_batch_is_refused(tmp_path, monkeypatch, as_tar):
    blobs, _ = cifar_batches(np.random.default_rng(2))
    monkeypatch.setattr(datasets, "CIFAR_BATCHES", {m: md5(b) for m, b in blobs.items()})
    blobs["data_batch_3"] = blobs["data_batch_3"][:-1] + b"\x00"
    with pytest.raises(datasets.DataError, match="data_batch_3 has md5"):
        datasets.load("cifar10", write_cifar(tmp_path, blobs, as_tar), n_valid=0, download=False)


def test_cifar10_truncated_archive(tmp_path):
    blobs, _ = cifar_batches(np.random.default_rng(3))
    root = write_cifar(tmp_path, blobs, as_tar=True)
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(datasets.DataError, match="cifar-10-python.tar.gz: not a complete"):
        datasets.load("cifar10", root, download=False)


# ------------------------------------------------------------------------ bad input

def test_truncated_gzip(tmp_path):
    fname = "t10k-labels-idx1-ubyte.gz"
    cut = real_bytes(fname, decompress=False)[:2000]
    with pytest.raises(datasets.DataError, match=f"{fname}: truncated or not a gzip file"):
        datasets.load("mnist", mnist_copy(tmp_path, {fname: cut}), download=False)


def test_valid_file_with_wrong_md5(tmp_path):
    """One label changed: still a well-formed IDX file, so only the md5 can catch it."""
    fname = "t10k-labels-idx1-ubyte.gz"
    content = bytearray(real_bytes(fname))
    content[8] = (content[8] + 1) % 10
    with pytest.raises(datasets.DataError, match=f"{fname}: md5 mismatch"):
        datasets.load("mnist", mnist_copy(tmp_path, {fname: gzip.compress(bytes(content))}), download=False)


@pytest.mark.parametrize("edit, message", [
    (lambda b: (2051).to_bytes(4, "big") + b[4:], "bad IDX magic number 2051, expected 2049"),
    (lambda b: b[:-1], "wrong size, 10007 bytes where the header needs 10008"),
    (lambda b: b + b"\x00", "wrong size, 10009 bytes"),
    (lambda b: b[:4] + (9999).to_bytes(4, "big") + b[8:-1], r"IDX dimensions \[9999\], expected \[10000\]"),
    (lambda b: b[:3], "too short for an IDX header"),
    (lambda b: b[:8] + b"\x0a" + b[9:], "labels outside 0..9"),
])
def test_malformed_idx_is_refused_even_if_md5_passes(tmp_path, monkeypatch, edit, message):
    """Second line of defence behind the md5 (e.g. a wrong table entry): header and size are checked."""
    fname = "t10k-labels-idx1-ubyte.gz"
    content = edit(real_bytes(fname))
    monkeypatch.setitem(datasets.FILES, "mnist", {**datasets.FILES["mnist"], fname: ("-", md5(content))})
    with pytest.raises(datasets.DataError, match=message):
        datasets.load("mnist", mnist_copy(tmp_path, {fname: gzip.compress(content)}), download=False)


def test_missing_directory_offline_names_dir_files_and_fix(tmp_path, monkeypatch):
    tried = []

    def offline(url, path):
        tried.append(url)
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(datasets, "_fetch", offline)
    root = tmp_path / "nowhere" / "deeper"            # two folders that do not exist
    with pytest.raises(datasets.DataError) as err:
        datasets.load("fashion_mnist", str(root))
    message = str(err.value)
    assert str(root / "fashion_mnist") in message and "SDNN_DATA" in message and "copy them there" in message
    assert all(f in message for f in datasets.FILES["fashion_mnist"])
    assert "Temporary failure in name resolution" in message
    # official site, then mirror; then it stops (offline), rather than wait on every file in turn
    assert tried == [base + "train-images-idx3-ubyte.gz" for base in datasets.URLS["fashion_mnist"]]
    assert not (tmp_path / "nowhere").exists()   # no partial download, no empty folders left
    assert tmp_path.exists()                     # and nothing that was there before removed


def test_download_false_never_fetches(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_fetch", lambda url, path: pytest.fail("fetched with download=False"))
    with pytest.raises(datasets.DataError, match=r"4 file\(s\) missing .*download=False"):
        datasets.load("mnist", str(tmp_path), download=False)
    with pytest.raises(datasets.DataError, match="cifar-10-python.tar.gz"):
        datasets.load("cifar10", str(tmp_path), download=False)


def test_download_falls_back_to_mirror_verifies_and_caches(tmp_path, monkeypatch):
    """The official site serves garbage, the mirror the real file: only the verified file is kept."""
    src = os.path.join(data_dir_or_skip("mnist"), "mnist")
    calls = []

    def fake_fetch(url, path):
        calls.append(url)
        if url.startswith(datasets.URLS["mnist"][0]):
            with open(path, "wb") as f:
                f.write(b"<html>Forbidden</html>")
        else:
            shutil.copyfile(os.path.join(src, url.rsplit("/", 1)[1]), path)
    monkeypatch.setattr(datasets, "_fetch", fake_fetch)
    data = datasets.load("mnist", str(tmp_path), n_valid=0)
    assert len(calls) == 8 and data["train"][1][0] == 5
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(MNIST_FILES)   # no temporary files left
    for fname in MNIST_FILES:
        assert (tmp_path / "mnist" / fname).read_bytes() == real_bytes(fname, decompress=False)
    calls.clear()
    datasets.load("mnist", str(tmp_path))
    assert calls == []   # cached


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'; choose one of mnist, fashion_mnist"):
        datasets.load("mnsit")


@pytest.mark.parametrize("n_valid", [-1, 1297, 5000, 2.5, "10", True])
def test_bad_n_valid_names_the_range(n_valid):
    with pytest.raises(ValueError, match=r"must be an integer in \[0, 1296\]"):
        datasets.load("digits", n_valid=n_valid)


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SDNN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_dir(str(tmp_path / "arg")) == str(tmp_path / "arg")
    assert datasets.data_dir() == str(tmp_path / "env")
    monkeypatch.delenv("SDNN_DATA")
    assert datasets.data_dir() == str(tmp_path / "xdg" / "sdnn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.data_dir() == str(tmp_path / "home" / ".cache" / "sdnn")
