import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# The RL Zoo startup hook (docs/zoo.md): sb3_gap_zoo.pth goes to the root of site-packages, where
# Python's `site` runs it at start-up; it imports the tiny top-level module sb3_gap_zoo_hook.
ZOO_PTH = "sb3_gap_zoo.pth"
with open(ZOO_PTH, encoding="utf-8") as f:
    ZOO_PTH_CONTENT = f.read()


class BuildPyWithPth(build_py):
    """``build_py`` that also puts the .pth at the root of the wheel (= site-packages) for normal installs."""

    def run(self) -> None:
        super().run()
        self.copy_file(ZOO_PTH, os.path.join(self.build_lib, ZOO_PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, ZOO_PTH)]


cmdclass = {"build_py": BuildPyWithPth}
try:  # PEP 660 editable installs (`pip install -e .`) build their own wheel: add the .pth to it too.
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithPth:
        def __init__(self, strategy):
            self._strategy = strategy

        def __call__(self, wheel, files, mapping):
            self._strategy(wheel, files, mapping)
            wheel.writestr(ZOO_PTH, ZOO_PTH_CONTENT.encode("utf-8"))

        def __enter__(self):
            self._strategy.__enter__()
            return self

        def __exit__(self, *args):
            return self._strategy.__exit__(*args)

    class EditableWheelWithPth(editable_wheel):
        """Editable wheel that also installs the .pth (setuptools >= 64; private hook, checked by tests/test_zoo.py)."""

        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = EditableWheelWithPth
except ImportError:  # setuptools < 64: legacy `setup.py develop`; see docs/zoo.md for the manual step
    pass

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="sb3_gap",
    version="0.1.0",
    description="Scale pixel-based deep RL networks in Stable-Baselines3: pluggable bottlenecks (GAP, SoftMoE, sparse) and Rainbow",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sb3_gap", "sb3_gap.*"]),
    py_modules=["sb3_gap_zoo_hook"],
    cmdclass=cmdclass,
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
        "huggingface-hub>=1.0,<3",  # sb3_gap.hub targets the 1.x/2.x client API
        "rl_zoo3>=2.7.0,<3",
        "rliable>=1.2",
        "arch>=5.3.1,<8",  # rliable 1.2 passes random_state, which arch 8 rejects
        "pandas>=2.2,<3",  # arch 7.x (for rliable) fails to import under pandas 3
        "tensorboard",
        "rich",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "safetensors>=0.4",
        "kron-torch>=0.3.3,<0.4",  # the Kron optimizer (docs/methods.md); sb3_gap.optim.Kron relies on 0.3's state layout
        "opencv-python-headless>=4.8,<5",  # gymnasium's AtariPreprocessing resizes with cv2
        "envpool>=1.2,<2; platform_system == 'Linux'",  # Procgen + fast Atari (needs system libqt5gui5 for Procgen)
        "requests>=2.28,<3",  # rl_zoo3.enjoy / load_from_hub import it; huggingface_hub 1.x+ no longer pulls it in
    ],
    extras_require={
        # the checks `make test` runs (CONTRIBUTING.md); pinned so that a new release cannot fail CI overnight
        # (psycopg: tests/test_postgres.py runs sweeps on a real PostgreSQL server)
        "test": [
            "pytest>=8",
            "pytest-timeout",
            "pytest-xdist>=3.5",
            "ruff==0.14.14",
            "mypy==1.18.2",
            "types-PyYAML",
            "import-linter==2.17",
            "psycopg[binary]>=3.1",
        ],
        # the documentation site (`make docs`, tests/test_docs_site.py): Sphinx, Markdown pages through MyST, Furo theme
        "docs": ["sphinx>=7", "myst-parser>=2", "furo>=2024.1"],
        # database drivers for sweeps shared across machines (docs/sweeps.md): postgresql://, mysql+pymysql://
        "postgres": ["psycopg[binary]>=3.1"],
        "mysql": ["pymysql>=1.0"],
    },
    entry_points={"console_scripts": ["sb3-gap=sb3_gap.cli:main"]},
    license="MIT",
    classifiers=["Programming Language :: Python :: 3"],
)
