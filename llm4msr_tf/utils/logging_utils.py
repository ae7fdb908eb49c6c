"""Logging setup shared by the CLI and scripts (library code only uses `logging`)."""
import logging

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False) -> None:
    """Configure root logging once: INFO by default, DEBUG with --verbose."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", force=True)
    # TensorFlow, absl and Beam are chatty at INFO; keep them to warnings unless verbose.
    for name in ("tensorflow", "absl", "apache_beam", "h5py", "matplotlib", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
