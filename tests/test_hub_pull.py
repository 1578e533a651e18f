"""sb3_gap.hub.pull (``sb3-gap pull``, ``pull_from_hub``) on downloads it must refuse, with the REAL huggingface_hub
client against the loopback fake Hub of tests/fake_hub.py (one per test module; the happy paths are in test_hub.py).

A downloaded config is checked against the allow-list with or without --allow-pickle; YAML anchors, deep nesting,
non-UTF-8 text, zip bombs, truncated archives, weights that do not fit the config and a full disk are each refused in
one line naming the file, and no run folder is left behind.
"""

from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch as th
import yaml
from helpers import ENV_ID, ENV_NAME, empty_or_missing, one_line_error, publish, safe_files, tiny_dqn  # tests/ is on sys.path

from sb3_gap.hub import HubError, load_from_hub, pull_from_hub, safe

# ------------------------------------------------------------------------------------------------
# pull: a downloaded config is checked with or without --allow-pickle, and cannot name what it may not run
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_pull_checks_downloaded_configs_with_or_without_allow_pickle(hub_env, dqn_files, tmp_path, allow_pickle):
    """A config.yml whose `normalize` would run code is refused on the pickle-free path and on the opt-in pickle path
    alike: --allow-pickle allows unpickling the model zip, never an unchecked config."""
    model, files = dqn_files
    marker = tmp_path / "pwned"
    repo_id = f"mallory/evil-normalize-{int(allow_pickle)}"
    evil = {"policy": "CnnPolicy", "normalize": f"__import__('os').system('touch {marker}')"}
    publish(hub_env, repo_id, {**files, "config.yml": yaml.safe_dump(evil).encode()})
    downloads = tmp_path / "dl"
    with pytest.raises(HubError, match=r"normalize .* calls something other than dict\(\).*--allow-pickle does not lift this"):
        pull_from_hub(repo_id, downloads, allow_pickle=allow_pickle)
    assert not marker.exists() and not (downloads / "dqn").exists()

    # A zip-only repository (the pickle path, opted in) gets the same check on its config.
    buf = io.BytesIO()
    model.save(buf)
    zip_repo = f"mallory/evil-zip-{int(allow_pickle)}"
    publish(hub_env, zip_repo, {f"dqn-{ENV_NAME}.zip": buf.getvalue(), "config.yml": yaml.safe_dump(evil).encode()})
    with pytest.raises(HubError, match="refused for downloaded configs"):
        pull_from_hub(zip_repo, downloads, algo="dqn", env_id=ENV_ID, allow_pickle=True)
    assert not marker.exists() and not (downloads / "dqn").exists()


def test_cli_pull_with_allow_pickle_refuses_an_unlisted_wrapper_in_one_line(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "mallory/evil-cli", {**files, "config.yml": b"env_wrapper: builtins.exec\n"})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/evil-cli", "-f", str(tmp_path / "dl"), "--allow-pickle"], "pull")
    assert "builtins.exec" in line and "not an allowed class" in line


def test_pull_copies_pickled_vecnormalize_statistics_only_with_allow_pickle(hub_env, dqn_files, tmp_path):
    """VecNormalize statistics are a pickle: a pickle-free pull of a repository that needs them is refused, and
    --allow-pickle copies them into the run folder next to the safetensors model."""
    _, files = dqn_files
    publish(hub_env, "bob/normalized", {**files, "config.yml": b"normalize: true\npolicy: CnnPolicy\n", "vec_normalize.pkl": b"stats"})
    with pytest.raises(HubError, match="needs VecNormalize statistics"):
        pull_from_hub("bob/normalized", tmp_path / "dl")
    info = pull_from_hub("bob/normalized", tmp_path / "dl", allow_pickle=True)
    assert info.path == "safetensors" and Path(info.log_path, ENV_NAME, "vecnormalize.pkl").read_bytes() == b"stats"


def test_pull_accepts_sb3_gap_policy_kwargs_calls_and_refuses_other_arguments(hub_env, dqn_files, tmp_path):
    """zoo_configs/*.yml write `policy_kwargs(...)` calls: a pull accepts them with sb3_gap's own arguments, and refuses
    the allow-listed call with other arguments, or any other call."""
    model, files = dqn_files
    ours = {"policy": "CnnPolicy", "policy_kwargs": "dict(policy_kwargs(encoder='impala', bottleneck='gap', width_scale=4), "
            "optimizer_kwargs=dict(eps=3.125e-4))", "env_wrapper": [{"gymnasium.wrappers.ClipReward": {"min_reward": -1.0, "max_reward": 1.0}}]}  # fmt: skip
    publish(hub_env, "zoo/ours", {**files, "config.yml": yaml.safe_dump(ours).encode()})
    info = pull_from_hub("zoo/ours", tmp_path / "dl")
    assert info.path == "safetensors" and Path(info.log_path, ENV_NAME, "config.yml").is_file()
    # ...but an allow-listed call with arguments that are not ours is refused, as is any other call.
    for bad in ("policy_kwargs(encoder='resnet')", "dict(policy_kwargs(width_scale=2), x=getattr(dict, 'mro'))"):
        publish(hub_env, "zoo/ours-bad", {**files, "config.yml": yaml.safe_dump({"policy_kwargs": bad}).encode()})
        with pytest.raises(HubError, match="refused for downloaded configs"):
            pull_from_hub("zoo/ours-bad", tmp_path / "dl2")


def test_pull_refuses_a_function_named_as_env_wrapper_in_one_line(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "mallory/push-as-wrapper", {**files, "config.yml": b"env_wrapper: sb3_gap.hub.push.push_to_hub\n"})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/push-as-wrapper", "-f", str(tmp_path / "dl")], "pull")
    assert "'sb3_gap.hub.push.push_to_hub', which is not an allowed class" in line and "gymnasium.wrappers.ClipReward" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def alias_yaml(levels: int = 4, fan: int = 5) -> bytes:
    """Nested YAML aliases ("billion laughs"): ``fan ** levels`` strings from a few hundred bytes (small here)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\npolicy: CnnPolicy\n").encode()


@pytest.mark.parametrize("name", ["config.yml", "env_kwargs.yml", "args.yml"])
def test_pull_refuses_yaml_anchors_and_aliases_in_one_line(hub_env, dqn_files, tmp_path, capsys, name):
    _, files = dqn_files
    repo = f"mallory/laughs-{name.split('.')[0].replace('_', '-')}"
    publish(hub_env, repo, {**files, name: alias_yaml()})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert f"{name} holds YAML that is not plain data" in line and "anchors and aliases are refused" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


# ------------------------------------------------------------------------------------------------
# pull: damaged, oversized or inconsistent downloads are one line, and nothing is written
# ------------------------------------------------------------------------------------------------


def test_pull_refuses_corrupt_or_mismatched_safetensors_in_one_line(hub_env, dqn_files, tmp_path, capsys):
    model, files = dqn_files
    publish(hub_env, "eve/corrupt-weights", {**files, safe.WEIGHTS_FILE: files[safe.WEIGHTS_FILE][:200]})
    line = one_line_error(capsys, ["pull", "--repo-id", "eve/corrupt-weights", "-f", str(tmp_path / "dl")], "pull")
    assert "model.safetensors is not a valid safetensors file" in line
    wide = safe_files(tiny_dqn(width_scale=2), tmp_path / "x2")
    publish(hub_env, "eve/x2-under-x1", {**files, safe.WEIGHTS_FILE: wide[safe.WEIGHTS_FILE]})  # a x2 checkpoint, a x1 config
    line = one_line_error(capsys, ["pull", "--repo-id", "eve/x2-under-x1", "-f", str(tmp_path / "dl")], "pull")
    assert "1024" in line and "512" in line and "belong to different models" in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())


def zip_bytes(members: dict[str, bytes], compression: int = 8) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "unpacked, words",
    [
        (80 * 2**20, "unpacks to 83,886,080 bytes, more than the 67,108,864 allowed"),  # above MAX_METRICS_BYTES
        (4 * 2**20, "more than x100"),  # within the size cap, but a bomb's ratio
    ],
)
def test_pull_refuses_a_metrics_zip_bomb_before_unpacking(hub_env, dqn_files, tmp_path, capsys, unpacked, words):
    _, files = dqn_files
    bomb = zip_bytes({"evaluations.npz": bytes(unpacked)})
    assert len(bomb) < unpacked / 500
    repo = f"mallory/metrics-bomb-{unpacked >> 20}"
    publish(hub_env, repo, {**files, "train_eval_metrics.zip": bomb})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert "train_eval_metrics.zip" in line and words in line
    assert not (tmp_path / "dl" / "dqn").exists() or not list((tmp_path / "dl" / "dqn").iterdir())
    # A plain metrics zip still unpacks.
    publish(hub_env, "alice/metrics-ok", {**files, "train_eval_metrics.zip": zip_bytes({"evaluations.npz": b"x" * 1000, "0.monitor.csv": b"r,l\n"})})
    info = pull_from_hub("alice/metrics-ok", tmp_path / "ok")
    assert Path(info.log_path, "evaluations.npz").stat().st_size == 1000


def test_pull_and_load_refuse_a_pickled_model_zip_bomb(hub_env, tmp_path):
    bomb = zip_bytes({"data": b"{}", "policy.pth": bytes(8 * 2**20)})
    publish(hub_env, "mallory/model-bomb", {f"dqn-{ENV_NAME}.zip": bomb})
    for call in (lambda: pull_from_hub("mallory/model-bomb", tmp_path / "dl", algo="dqn", env_id=ENV_ID, allow_pickle=True),
                 lambda: load_from_hub("mallory/model-bomb", algo="dqn", env_id=ENV_ID, allow_pickle=True)):  # fmt: skip
        with pytest.raises(ValueError, match=rf"dqn-{ENV_NAME}.zip unpacks .* more than x100"):
            call()


def test_pull_refuses_a_truncated_or_damaged_pickled_zip_and_saves_nothing(hub_env, tmp_path, capsys):
    buf = io.BytesIO()
    tiny_dqn().save(buf)
    whole = buf.getvalue()
    publish(hub_env, "alice/truncated-zip", {f"dqn-{ENV_NAME}.zip": whole[: len(whole) // 2]})
    argv = ["pull", "--repo-id", "alice/truncated-zip", "-f", str(tmp_path / "dl"), "--algo", "dqn", "--env", ENV_ID, "--allow-pickle"]
    line = one_line_error(capsys, argv, "pull")
    assert f"dqn-{ENV_NAME}.zip is not a valid zip archive" in line and "truncated" in line
    assert not list((tmp_path / "dl" / "dqn").glob(f"{ENV_NAME}_*"))
    # damaged inside (a flipped byte in a member): the CRC check catches it too
    broken = bytearray(whole)
    start = whole.index(b"policy.pth") + 200
    broken[start : start + 64] = bytes(64)
    publish(hub_env, "alice/damaged-zip", {f"dqn-{ENV_NAME}.zip": bytes(broken)})
    line = one_line_error(capsys, [*argv[:2], "alice/damaged-zip", *argv[3:]], "pull")
    assert "is not a valid zip archive" in line


def _deep_json(depth: int) -> bytes:
    return b'{"format": "sb3_gap.hub/1", "x": ' + b"[" * depth + b"]" * depth + b"}"


def _deep_yaml(depth: int) -> bytes:
    return b"policy: CnnPolicy\nx: " + b"[" * depth + b"]" * depth + b"\n"


@pytest.mark.parametrize(
    "name, content, words",
    [
        (safe.CONFIG_FILE, _deep_json(100_000), "nested deeper than"),
        ("config.yml", _deep_yaml(100_000), "nested deeper than"),
        ("args.yml", _deep_yaml(5_000), "nested deeper than"),
        (safe.CONFIG_FILE, b'{"format": "sb3_gap.hub/1", "env_id": "\xff\xfe"}', "is not UTF-8 text"),
        ("config.yml", b"policy: CnnPolicy\nx: \xff\xfe\n", "is not UTF-8 text"),
        ("env_kwargs.yml", b"\x80\x81", "is not UTF-8 text"),
    ],
)
def test_pull_refuses_deeply_nested_or_non_utf8_files_in_one_line(hub_env, dqn_files, tmp_path, capsys, name, content, words):
    _, files = dqn_files
    repo = f"mallory/{name.split('.')[0].replace('_', '-')}-{abs(hash(content)) % 10**6}"
    publish(hub_env, repo, {**files, name: content})
    line = one_line_error(capsys, ["pull", "--repo-id", repo, "-f", str(tmp_path / "dl")], "pull")
    assert name in line and words in line, line
    assert empty_or_missing(tmp_path / "dl" / "dqn")


def test_pull_refuses_weights_with_a_tensor_the_model_lacks_in_one_line(hub_env, dqn_files, tmp_path, capsys):
    model, files = dqn_files
    tensors = safetensors.torch.load(files[safe.WEIGHTS_FILE])
    tensors["q_net.backdoor.weight"] = th.zeros(3, 3)
    publish(hub_env, "mallory/extra-tensor", {**files, safe.WEIGHTS_FILE: safetensors.torch.save(tensors, metadata={"format": "pt"})})
    line = one_line_error(capsys, ["pull", "--repo-id", "mallory/extra-tensor", "-f", str(tmp_path / "dl")], "pull")
    assert safe.WEIGHTS_FILE in line and "'q_net.backdoor.weight'" in line and "does not build" in line, line
    assert empty_or_missing(tmp_path / "dl" / "dqn")


def test_cli_pull_and_push_refuse_a_negative_exp_id(hub_env, dqn_files, tmp_path, capsys):
    _, files = dqn_files
    publish(hub_env, "alice/exp-id", files)
    line = one_line_error(capsys, ["pull", "--repo-id", "alice/exp-id", "-f", str(tmp_path / "dl"), "--exp-id", "-1"], "pull")
    assert "--exp-id" in line and "must be an integer >= 0" in line and "got -1" in line
    assert not (tmp_path / "dl").exists()
    line = one_line_error(capsys, ["push", "--algo", "dqn", "--env", ENV_ID, "-f", str(tmp_path / "logs"), "--repo-id", "alice/x",
                                   "--exp-id", "-3", "--no-video"], "push")  # fmt: skip
    assert "--exp-id" in line and "got -3" in line


def test_pull_on_a_full_disk_is_one_line_and_leaves_no_run_folder(hub_env, dqn_files, tmp_path, monkeypatch, capsys):
    """A full disk while pull writes the run folder (copied files and the checked YAML) or the Hub cache is one line
    naming where, and leaves no run folder behind."""
    import shutil

    from huggingface_hub import HfApi

    _, files = dqn_files
    publish(hub_env, "alice/full-disk", files)
    downloads = tmp_path / "dl"

    def copyfile(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import sb3_gap.hub.pull as pull_module

    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", copyfile)  # writing the run folder: copied files ...
        m.setattr(pull_module, "write_zoo_yaml", copyfile)  # ... and the checked YAML, written again
        line = one_line_error(capsys, ["pull", "--repo-id", "alice/full-disk", "-f", str(downloads)], "pull")
    assert "No space left on device" in line and str(downloads / "dqn" / f"{ENV_NAME}_1") in line, line
    assert empty_or_missing(downloads / "dqn")

    def download(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(HfApi, "hf_hub_download", download)  # the Hub cache
        line = one_line_error(capsys, ["pull", "--repo-id", "alice/full-disk", "-f", str(downloads)], "pull")
    assert "No space left on the local disk" in line and "hf-cache" in line and "connection" not in line, line
    assert empty_or_missing(downloads / "dqn")
