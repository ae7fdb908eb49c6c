"""Runs one pytest file under `bazel test` (py_test needs a main; pytest collects the tests)."""
import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider"] + sys.argv[1:]))
