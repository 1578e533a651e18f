from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="sb3_gap",
    version="0.1.0",
    description="Scale pixel-based deep RL networks in Stable-Baselines3: pluggable bottlenecks (GAP, SoftMoE, sparse) and Rainbow",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sb3_gap", "sb3_gap.*"]),
    package_data={"sb3_gap": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        # torch first and CPU-only here: `pip install torch==2.13.0` before this package (see README).
        "torch>=2.3,<3",
        "stable-baselines3>=2.7.0,<3",  # 2.7 adds NStepReplayBuffer
        "sb3-contrib>=2.7.0,<3",
        "gymnasium>=1.0,<2",
        "ale-py>=0.10",
        "minatar>=1.0.15",
        "seaborn",  # minatar's gym module imports it
        "optuna>=4.0",
        "huggingface-hub>=0.30",
        "rl_zoo3>=2.7.0,<3",
        "rliable>=1.2",
        "tensorboard",
        "rich",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "safetensors>=0.4",
        "requests>=2.28,<3",  # rl_zoo3.enjoy / load_from_hub import it; huggingface_hub 1.x+ no longer pulls it in
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout"]},
    entry_points={"console_scripts": ["sb3-gap=sb3_gap.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"],
)
