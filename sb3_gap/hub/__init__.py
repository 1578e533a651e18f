"""Share sb3_gap agents on the Hugging Face Hub (RL Zoo layout), and load them back without unpickling.

>>> from sb3_gap.hub import load_from_hub, push_to_hub
>>> push_to_hub(model, "user/rainbow-gap-breakout", env_id="MinAtar/Breakout-v1")  # doctest: +SKIP
>>> model = load_from_hub("user/rainbow-gap-breakout")  # doctest: +SKIP

Modules: :mod:`~sb3_gap.hub.push` (evaluate and upload), :mod:`~sb3_gap.hub.pull` (download, load, Zoo run
folder), :mod:`~sb3_gap.hub.safe` (the pickle-free ``model.safetensors`` + ``sb3_gap.json``),
:mod:`~sb3_gap.hub.plain` (plain data: classes by registered name, spaces), :mod:`~sb3_gap.hub.zoo_yaml` (the
Zoo's YAML files, checked), :mod:`~sb3_gap.hub.common` (file names, errors), :mod:`~sb3_gap.hub.card` (model
card) and :mod:`~sb3_gap.hub.cli` (``sb3-gap push`` / ``pull``). See ``docs/hub.md``.
"""

from sb3_gap.hub.common import HubError, model_file_name
from sb3_gap.hub.plain import register_safe_class
from sb3_gap.hub.pull import LoadInfo, load_from_hub, pull_from_hub
from sb3_gap.hub.push import PushInfo, push_to_hub

__all__ = ["HubError", "LoadInfo", "PushInfo", "load_from_hub", "model_file_name", "pull_from_hub", "push_to_hub", "register_safe_class"]
