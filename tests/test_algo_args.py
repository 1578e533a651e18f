"""The table of algorithm arguments (sb3_gap/algo_args.py): valid values pass, out-of-range ones are one line."""

import pytest


def test_check_algo_args_accepts_valid_values_schedules_and_unknown_keys():
    from sb3_gap.algo_args import check_algo_args

    check_algo_args(dict(learning_rate=lambda p: 1e-4 * p, max_grad_norm=None, gradient_steps=-1, train_freq=(1, "episode"),
                         exploration_fraction=None, clip_range="lin_0.1", gamma=1.0, priority_beta=1.0, unknown=object()))  # fmt: skip
    with pytest.raises(ValueError, match=r"^clip_range must be a finite number > 0"):
        check_algo_args(dict(clip_range="lin_-0.1"))
