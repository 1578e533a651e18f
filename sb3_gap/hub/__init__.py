"""Share sb3_gap agents on the Hugging Face Hub (RL Zoo layout), and load them back without unpickling.

>>> from sb3_gap.hub import load_from_hub, push_to_hub
>>> push_to_hub(model, "user/rainbow-gap-breakout", env_id="MinAtar/Breakout-v1")  # doctest: +SKIP
>>> model = load_from_hub("user/rainbow-gap-breakout")  # doctest: +SKIP

See ``docs/hub.md``.
"""

from sb3_gap.hub.api import HubError, LoadInfo, PushInfo, load_from_hub, model_file_name, pull_from_hub, push_to_hub
from sb3_gap.hub.safe import register_safe_class

__all__ = ["HubError", "LoadInfo", "PushInfo", "load_from_hub", "model_file_name", "pull_from_hub", "push_to_hub", "register_safe_class"]
