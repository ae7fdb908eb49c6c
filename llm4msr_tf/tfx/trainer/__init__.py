"""The TFX user module (Transform `preprocessing_fn`, Trainer `run_fn`) in a package of its own.

TFX packages every ``.py`` file in the directory of the module file into a wheel, so this
directory holds only the module file.
"""
import os

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm4msr_module.py")
