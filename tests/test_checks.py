"""The shared argument checks (sb3_gap/checks.py): one line naming the value and what is valid."""

import numpy as np
import pytest

from sb3_gap.checks import check, check_choice, check_int, check_range


def test_check_int_accepts_and_converts():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", 0, minimum=0) == 0


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "2", None])
def test_check_int_rejects(value):
    with pytest.raises(ValueError, match=r"^n_envs must be a positive integer \(e\.g\. 1, 8\), got "):
        check_int("n_envs", value, example="1, 8")


def test_check_int_bounds_in_message():
    with pytest.raises(ValueError, match=r"width_scale must be a positive integer and at most 16, got 17"):
        check_int("width_scale", 17, maximum=16)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0, got -1"):
        check_int("steps", -1, minimum=0)


def test_check_range():
    assert check_range("gamma", 0.99, 0, 1) == 0.99
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match=r"^gamma must be in \[0, 1\], got "):
            check_range("gamma", bad, 0, 1)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0"):
        check_range("lr", 0, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got inf"):
        check_range("lr", float("inf"), low=0, low_open=True)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\) \(e\.g\. 0\.9\), got 1"):
        check_range("sparsity", 1, 0, 1, high_open=True, example="0.9")


def test_check_choice():
    assert check_choice("bottleneck", "gap", {"gap": 1, "flatten": 2}) == "gap"
    with pytest.raises(ValueError, match=r"^Unknown bottleneck 'gapp'; valid choices: \['flatten', 'gap'\]$"):
        check_choice("bottleneck", "gapp", {"gap": 1, "flatten": 2})
    with pytest.raises(ValueError, match="Unknown loss"):
        check_choice("loss", ["unhashable"], ("c51", "mse"))


def test_check():
    check(True, "never")
    with pytest.raises(ValueError, match="^boom$"):
        check(False, "boom")
