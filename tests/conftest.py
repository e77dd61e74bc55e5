"""Shared test set-up: import the flat modules from the repository root; keep slow runs opt-in."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long run (minutes); skipped unless --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def data_dir_or_skip(name):
    """Directory holding `name` (mnist, fashion_mnist) under $SDNN_DATA, or skip the test."""
    root = os.environ.get("SDNN_DATA")
    if not root or not os.path.isdir(os.path.join(root, name)):
        pytest.skip(f"{name} not found: set SDNN_DATA to the directory that holds {name}/")
    return root
