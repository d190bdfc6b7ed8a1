"""Installs dfe_jax: discrete facial-expression tokens (RVQ-VAE) in JAX/Flax."""

import setuptools

COMMANDS = ("synth", "ingest", "train", "tokenize", "export", "discover", "probe", "report",
            "extract", "demo", "ablate")

setuptools.setup(
    name="dfe_jax",
    version="0.1.0",
    description="Discrete Facial Encoding: RVQ-VAE facial-expression tokens in JAX/Flax.",
    # configs/ stays where users name it (--config=configs/rvq.py) and installs as dfe_jax.configs,
    # so the main job finds its configs from any install.
    packages=setuptools.find_packages(include=["dfe_jax", "dfe_jax.*"]) + ["dfe_jax.configs"],
    package_dir={"dfe_jax.configs": "configs"},
    package_data={"dfe_jax": ["assets/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10,<0.11",
        "jaxlib>=0.10,<0.11",
        "flax>=0.11,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "ml_collections>=1.0,<2",
        "absl-py>=2.1,<3",
        "tensorflow-cpu>=2.18,<2.22",
        "tensorboard>=2.18,<2.22",
        "scikit-learn>=1.5,<2",
        "numpy>=1.26,<3",
        "matplotlib>=3.8,<4",
        # Extract and ingest run as Beam pipelines (DirectRunner here, Dataflow/Flink/Spark at
        # scale); TFDS reads the shards; crc32c frames TFRecords without loading TensorFlow.
        "apache-beam>=2.70,<3",
        "tensorflow-datasets>=4.9.9,<5",
        "google-crc32c>=1.5,<2",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"],
        # mediapipe brings opencv-contrib-python; a second OpenCV wheel would clobber its cv2/.
        "video": ["mediapipe>=1.2,<1.3"],
    },
    entry_points={
        "console_scripts": [
            f"dfe-{name}=dfe_jax.{name}:run" for name in COMMANDS
        ],
    },
)
