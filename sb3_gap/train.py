"""``python -m sb3_gap.train``: the RL Zoo's ``rl_zoo3.train`` with sb3_gap registered first.

Same command line as ``python -m rl_zoo3.train`` (``--algo rainbow --env MinAtar/Breakout-v1
--conf-file zoo_configs/rainbow.yml ...``). Useful where the startup hook is not installed (e.g.
sb3_gap used from a source checkout through ``PYTHONPATH``) or is disabled with ``SB3_GAP_NO_ZOO_HOOK=1``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """
    Register sb3_gap with rl_zoo3, then run ``rl_zoo3.train.train()`` on ``argv``.

    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    from sb3_gap.checks import Refused
    from sb3_gap.zoo import register_with_zoo

    register_with_zoo()
    from rl_zoo3.train import train

    if argv is not None:  # rl_zoo3.train parses sys.argv
        sys.argv = [sys.argv[0], *argv]
    try:
        train()
    except Refused as e:  # sb3_gap refused a value (the hook's HyperparameterError, Rainbow's own checks): one line
        raise SystemExit(f"sb3-gap train: error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None


if __name__ == "__main__":
    main()
