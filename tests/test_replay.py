"""RainbowReplayBuffer and SumTree tested on their own (dqn_zoo style): every sampleable transition is
compared with a naive per-step Python reference built from what the env emitted."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

from sb3_gap.rainbow.buffers import RainbowReplayBuffer, RainbowSamples, infer_frame_stack
from sb3_gap.rainbow.sum_tree import SumTree

# ----------------------------------------------------------------------------- sum tree


@pytest.mark.parametrize("capacity", [1, 5, 64, 1000])
@pytest.mark.parametrize("branching", [2, 16])
def test_sum_tree_invariants_after_random_updates(capacity: int, branching: int) -> None:
    rng = np.random.default_rng(0)
    tree = SumTree(capacity, branching)
    leaves = np.zeros(capacity)
    for _ in range(50):
        idx = rng.integers(0, capacity, size=rng.integers(1, 20))
        val = rng.uniform(0, 10, size=idx.size) * (rng.uniform(size=idx.size) > 0.3)
        tree.update(idx, val)
        for i, v in zip(idx, val):  # numpy assignment semantics: the last duplicate wins
            leaves[i] = v
        np.testing.assert_array_equal(tree.leaves(), leaves)
        assert tree.total == pytest.approx(leaves.sum(), rel=1e-12, abs=1e-12)  # reading the total recomputes the sums
        for children, parents in zip(tree.levels[:-1], tree.levels[1:]):  # every inner node = the sum of its children
            np.testing.assert_array_equal(parents[: len(children) // tree.branching], children.reshape(-1, tree.branching).sum(axis=1))


@pytest.mark.parametrize("branching", [2, 3, 16])
def test_sum_tree_find_matches_prefix_sums_and_edges(branching: int) -> None:
    rng = np.random.default_rng(1)
    capacity = 37  # not a power of the branching: padding leaves must never come back
    values = rng.integers(1, 50, size=capacity).astype(np.float64) / 8  # dyadic: all prefix sums are exact
    values[[0, 5, 6, 36]] = 0.0  # zero leaves (incl. first and last) must never be returned
    tree = SumTree(capacity, branching)
    tree.update(np.arange(capacity), values)
    cumsum = np.cumsum(values)
    queries = np.concatenate([rng.uniform(0, tree.total, 2000), cumsum[:-1], [0.0, tree.total, tree.total * 2, -1.0]])
    found = tree.find(queries)
    clipped = np.clip(queries, 0.0, np.nextafter(tree.total, 0))
    expected = np.searchsorted(cumsum, clipped, side="right")  # first j with cumsum[j] > v
    np.testing.assert_array_equal(found, expected)
    assert np.all(values[found] > 0)
    assert found[-4] == 1 and found[-1] == 1  # 0 and negatives: first positive leaf
    assert found[-3] == 35 and found[-2] == 35  # total and beyond: last positive leaf
    with pytest.raises(ValueError, match="all leaves are 0"):
        SumTree(4).find(np.array([0.0]))
    # guard against round-off: a descent that ends on a zero leaf is moved to the nearest positive leaf
    tree = SumTree(4, branching)
    tree.update(np.arange(4), np.array([1.0, 1.0, 0.0, 0.0]))
    tree.levels[-1][0] = 3.0  # as if rounding had made the root larger than its children's sum
    assert tree.find(np.array([2.5]))[0] == 1
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)
    with pytest.raises(ValueError, match="branching"):
        SumTree(4, branching=1)


def test_sum_tree_pickles_and_reads_the_binary_layout_of_older_versions() -> None:
    tree = SumTree(37)
    tree.update(np.arange(37), np.arange(37, dtype=np.float64))
    copy = pickle.loads(pickle.dumps(tree))
    np.testing.assert_array_equal(copy.nodes, tree.nodes)
    copy.update(np.array([3]), 100.0)  # the levels are views of the loaded nodes again
    assert copy.total == tree.total + 97 and copy.nodes[3] == 100.0
    # a buffer saved before the k-ary tree pickled a binary heap: node 1 the root, leaf j at node n_leaves + j
    old = SumTree.__new__(SumTree)
    heap = np.zeros(128)
    heap[64 : 64 + 37] = np.arange(37)
    old.__setstate__({"capacity": 37, "depth": 6, "n_leaves": 64, "nodes": heap})
    assert not old._stale  # the rebuilt sums are current
    np.testing.assert_array_equal(old.leaves(), np.arange(37))
    assert old.total == tree.total and old.find(np.array([0.5]))[0] == 1


# ----------------------------------------------------------------------------- helpers


def vector_buffer(n_envs: int = 1, size: int = 40, **kwargs) -> RainbowReplayBuffer:
    obs_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    return RainbowReplayBuffer(size, obs_space, spaces.Discrete(3), device="cpu", n_envs=n_envs, **kwargs)


def run_random_episodes(buffer: RainbowReplayBuffer, n_adds: int, seed: int, p_term: float = 0.12, p_trunc: float = 0.08):
    """Drive ``buffer.add`` like SB3's ``_store_transition``; obs = (env, unique id); returns per-env step records."""
    rng = np.random.default_rng(seed)
    n_envs = buffer.n_envs
    uid = 0
    obs = np.zeros((n_envs, 2), dtype=np.float32)
    for env in range(n_envs):
        obs[env] = (env, uid := uid + 1)
    records: list[list[dict]] = [[] for _ in range(n_envs)]
    for _ in range(n_adds):
        term = rng.uniform(size=n_envs) < p_term
        trunc = ~term & (rng.uniform(size=n_envs) < p_trunc)
        done = term | trunc
        action = rng.integers(0, 3, size=n_envs)
        reward = rng.normal(size=n_envs).astype(np.float32)
        next_obs = np.zeros_like(obs)  # next_obs as SB3 passes it: terminal_observation for done envs
        new_obs = np.zeros_like(obs)  # what the VecEnv returns: the reset obs for done envs
        for env in range(n_envs):
            next_obs[env] = (env, uid := uid + 1)
            new_obs[env] = (env, uid := uid + 1) if done[env] else next_obs[env]
        infos = [{"TimeLimit.truncated": bool(trunc[e])} for e in range(n_envs)]
        buffer.add(obs.copy(), next_obs.copy(), action, reward, done, infos)
        for env in range(n_envs):
            records[env].append(
                dict(obs=obs[env].copy(), next_obs=next_obs[env].copy(), action=action[env], reward=float(reward[env]),
                     term=bool(term[env]), trunc=bool(trunc[env]))
            )  # fmt: skip
        obs = new_obs
    return records


def reference(records, buffer: RainbowReplayBuffer, handle: int, treat_trunc_as_term: bool = False):
    """Naive n-step transition for a tree handle, or None if its window is not complete yet."""
    n_adds = len(records[0])
    slot, env = divmod(int(handle), buffer.n_envs)
    step = slot + ((n_adds - 1 - slot) // buffer.buffer_size) * buffer.buffer_size  # latest step in that slot
    ret, k = 0.0, 0
    for i in range(buffer.n_steps):
        if step + i >= n_adds:
            return None  # window runs past the newest step
        rec = records[env][step + i]
        ret += buffer.gamma**i * rec["reward"]
        k = i + 1
        if rec["term"] or rec["trunc"]:
            break
    last = records[env][step + k - 1]
    if not (last["term"] or last["trunc"]) and step + k >= n_adds:
        return None  # bootstrap observation not added yet
    done = last["term"] or (last["trunc"] and treat_trunc_as_term)
    return dict(step=step, obs=records[env][step]["obs"], action=records[env][step]["action"], ret=ret,
                discount=buffer.gamma**k, done=float(done), next_obs=last["next_obs"])  # fmt: skip


def check_all_sampleable(records, buffer: RainbowReplayBuffer, treat_trunc_as_term: bool = False) -> int:
    """Every handle the tree can return is exactly a complete window, and matches the reference."""
    n_adds = len(records[0])
    live = np.flatnonzero(buffer.tree.leaves() > 0)
    expected = []
    for handle in range(buffer.tree.capacity):
        slot = handle // buffer.n_envs
        if slot >= n_adds:
            continue
        ref = reference(records, buffer, handle, treat_trunc_as_term)
        history_kept = n_adds <= buffer.buffer_size or ref is None or ref["step"] - (buffer.frame_stack - 1) >= n_adds - buffer.buffer_size
        if ref is not None and history_kept:
            expected.append(handle)
    np.testing.assert_array_equal(live, expected)
    batch = buffer._get_samples(live)
    for row, handle in enumerate(live):
        ref = reference(records, buffer, handle, treat_trunc_as_term)
        np.testing.assert_array_equal(batch.observations[row].numpy(), ref["obs"])
        np.testing.assert_array_equal(batch.next_observations[row].numpy(), ref["next_obs"])
        assert batch.actions[row, 0].item() == ref["action"]
        assert batch.rewards[row, 0].item() == pytest.approx(ref["ret"], rel=1e-5, abs=1e-5)
        assert batch.discounts[row, 0].item() == pytest.approx(ref["discount"], rel=1e-6)
        assert batch.dones[row, 0].item() == ref["done"]
    return len(live)


# ----------------------------------------------------------------------------- n-step windows


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("n_adds", [25, 130])  # 130 > 40 // n_envs: the buffer wraps around
@pytest.mark.parametrize("n_steps", [1, 3, 5])
def test_n_step_windows_match_naive_reference(n_envs: int, n_adds: int, n_steps: int) -> None:
    buffer = vector_buffer(n_envs, n_steps=n_steps, gamma=0.9)
    records = run_random_episodes(buffer, n_adds, seed=10 * n_envs + n_steps)
    n_live = check_all_sampleable(records, buffer)
    assert n_live > 0.5 * buffer.size() * n_envs
    # the batch also carries the expected types and shapes
    batch = buffer.sample(16)
    assert isinstance(batch, RainbowSamples)
    for name in ("actions", "dones", "rewards", "discounts", "weights"):
        assert getattr(batch, name).shape == (16, 1), name
    assert batch.observations.shape == (16, 2) and batch.indices.shape == (16,)
    assert batch.rewards.dtype == th.float32 and batch.dones.dtype == th.float32 and batch.weights.dtype == th.float32
    assert buffer.size() == min(n_adds, buffer.buffer_size)
    # sampled handles are always sampleable ones, and the env is consistent with the handle
    assert np.all(buffer.tree.get(batch.indices) > 0)
    np.testing.assert_array_equal(batch.observations[:, 0].numpy(), batch.indices % n_envs)
    np.testing.assert_array_equal(batch.next_observations[:, 0].numpy(), batch.indices % n_envs)


def test_timeouts_as_terminations_when_not_handled() -> None:
    buffer = vector_buffer(1, n_steps=3, gamma=0.8, handle_timeout_termination=False)
    records = run_random_episodes(buffer, 60, seed=3)
    check_all_sampleable(records, buffer, treat_trunc_as_term=True)


def test_env_reset_without_done_is_cut_as_truncation() -> None:
    """A loaded buffer + learn() resets the env without a done: the previous step becomes a truncation."""
    buffer = vector_buffer(1, n_steps=3, gamma=0.5)
    box = lambda v: np.array([[0.0, v]], dtype=np.float32)  # noqa: E731
    for t in range(5):
        buffer.add(box(t), box(t + 1), np.array([0]), np.array([1.0]), np.array([False]), [{}])
    with pytest.warns(UserWarning, match="does not continue"):
        buffer.add(box(100), box(101), np.array([0]), np.array([1.0]), np.array([False]), [{}])
    assert buffer.dones[4, 0] == 1 and buffer.timeouts[4, 0] == 1
    batch = buffer._get_samples(np.array([3]))  # window 3, 4 then cut: bootstrap from obs 5 with gamma^2
    assert batch.rewards.item() == pytest.approx(1.5) and batch.discounts.item() == pytest.approx(0.25)
    assert batch.next_observations[0, 1].item() == 5 and batch.dones.item() == 0
    assert buffer.tree.get(np.array([4])) > 0 and buffer.tree.get(np.array([5])) == 0


# ----------------------------------------------------------------------------- priorities


def terminal_steps_buffer(n: int, **kwargs) -> RainbowReplayBuffer:
    """n one-step episodes: every transition is sampleable right after its add."""
    buffer = vector_buffer(1, size=max(n, 8) + 1, **kwargs)
    for t in range(n):
        obs = np.array([[0.0, t]], dtype=np.float32)
        buffer.add(obs, obs + 0.5, np.array([0]), np.array([1.0]), np.array([True]), [{}])
    return buffer


def test_sampling_frequencies_follow_priority_alpha() -> None:
    np.random.seed(0)
    alpha = 0.6
    buffer = terminal_steps_buffer(8, alpha=alpha)
    losses = np.array([0.1, 1.0, 2.0, 4.0, 0.5, 8.0, 3.0, 0.0])
    buffer.update_priorities(np.arange(8), losses)
    np.testing.assert_allclose(buffer.tree.get(np.arange(8)), (losses + 1e-6) ** alpha)
    counts = np.zeros(8)
    n_batches, batch_size = 500, 32
    for _ in range(n_batches):
        counts += np.bincount(buffer.sample(batch_size).indices, minlength=8)
    expected = (losses + 1e-6) ** alpha / ((losses + 1e-6) ** alpha).sum() * n_batches * batch_size
    chi2 = ((counts - expected) ** 2 / np.maximum(expected, 1e-9)).sum()
    assert chi2 < 24.3, (chi2, counts, expected)  # 99.9% quantile of chi-square with 7 dof
    assert counts[7] < 5  # priority (1e-6)^0.6 ~ 2.5e-4: essentially never


@pytest.mark.parametrize("per_sampling", ["iid", "stratified"])
def test_per_sampling_draws_in_proportion_to_priority(per_sampling: str) -> None:
    """On a fixed tree both samplers draw transition i with probability p_i / Σp (chi-square over all
    draws); "iid" (Dopamine 4.1.2's JAX sampler) draws a batch's members independently, with replacement (per-batch
    counts vary as a multinomial's), "stratified" one per segment (counts within 2 of batch_size * p_i)."""
    np.random.seed(2)
    buffer = terminal_steps_buffer(8, alpha=1.0, per_sampling=per_sampling)
    losses = np.array([1.0, 2.0, 3.0, 4.0, 0.5, 5.5, 6.0, 8.0])  # total 30
    buffer.update_priorities(np.arange(8), losses)
    probs = buffer.tree.get(np.arange(8)) / buffer.tree.total
    n_batches, batch_size = 2_000, 32
    counts = np.stack([np.bincount(buffer.sample(batch_size).indices, minlength=8) for _ in range(n_batches)])
    expected = probs * n_batches * batch_size
    chi2 = ((counts.sum(axis=0) - expected) ** 2 / expected).sum()
    assert chi2 < 24.3, (chi2, counts.sum(axis=0), expected)  # 99.9% quantile of chi-square with 7 dof
    binomial_var = batch_size * probs * (1 - probs)
    if per_sampling == "iid":
        np.testing.assert_allclose(counts.var(axis=0), binomial_var, rtol=0.2)  # independent draws, with replacement
    else:
        assert np.all(np.abs(counts - batch_size * probs) < 2)  # an interval of length L meets at most ⌈L⌉ + 1 segments
        assert counts.var(axis=0).sum() < 0.25 * binomial_var.sum()


def test_per_sampling_and_priority_eps_defaults_and_errors() -> None:
    box, disc = spaces.Box(0, 1, (2,), np.float32), spaces.Discrete(2)
    buffer = RainbowReplayBuffer(100, box, disc)
    assert (buffer.per_sampling, buffer.priority_eps) == ("stratified", 1e-6)
    with pytest.raises(ValueError, match=r"Unknown per_sampling 'uniform'; valid choices: \['iid', 'stratified'\]"):
        RainbowReplayBuffer(100, box, disc, per_sampling="uniform")
    old = terminal_steps_buffer(4)
    del old.per_sampling  # a buffer pickled before the option: samples stratified
    assert old.sample(4).indices.tolist() == [0, 1, 2, 3]


def test_importance_weights_formula_and_bound() -> None:
    np.random.seed(1)
    buffer = terminal_steps_buffer(8, alpha=0.5)
    buffer.update_priorities(np.arange(8), np.array([0.1, 1.0, 2.0, 4.0, 0.5, 8.0, 3.0, 0.3]))
    leaves = buffer.tree.get(np.arange(8))
    for beta in (0.0, 0.4, 0.5, 1.0):
        batch = buffer.sample(64, beta=beta)
        p = leaves[batch.indices] / leaves.sum()
        w = (8 * p) ** (-beta)
        np.testing.assert_allclose(batch.weights[:, 0].numpy(), w / w.max(), rtol=1e-5)
        assert batch.weights.max().item() == pytest.approx(1.0) and batch.weights.min().item() > 0
    uniform = terminal_steps_buffer(8, prioritized=False)
    uniform.update_priorities(np.arange(8), np.arange(8.0))  # no-op when not prioritized
    assert np.all(uniform.tree.get(np.arange(8)) == 1.0)
    assert np.all(uniform.sample(32, beta=1.0).weights.numpy() == 1.0)


def test_new_transitions_get_max_priority() -> None:
    buffer = terminal_steps_buffer(4, alpha=0.5)
    assert np.all(buffer.tree.get(np.arange(4)) == 1.0)  # Dopamine starts the max at 1
    buffer.update_priorities(np.arange(4), np.array([0.0, 16.0, 3.0, 0.25]))
    assert buffer.max_priority == pytest.approx(4.0, rel=1e-6)
    buffer.update_priorities(np.array([1]), np.array([0.0]))  # the max is the max ever recorded
    obs = np.array([[0.0, 9.0]], dtype=np.float32)
    buffer.add(obs, obs, np.array([0]), np.array([0.0]), np.array([True]), [{}])
    assert buffer.tree.get(np.array([4]))[0] == pytest.approx(4.0, rel=1e-6)
    # priorities of overwritten / not yet sampleable handles are not set
    buffer.update_priorities(np.array([7]), np.array([5.0]))
    assert buffer.tree.get(np.array([7]))[0] == 0.0


# ----------------------------------------------------------------------------- frame stacking


class FrameEnv(gym.Env):
    """Tiny image env: every frame is distinct (its id is written into the pixels); random terminations."""

    def __init__(self, seed: int, channels_first: bool, channels: int = 1) -> None:
        shape = (channels, 14, 15) if channels_first else (14, 15, channels)
        self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        self.action_space = spaces.Discrete(2)
        self.rng = np.random.default_rng(seed)
        self.frame_id = 1000 * seed

    def _frame(self) -> np.ndarray:
        self.frame_id += 1
        frame = self.rng.integers(1, 256, size=self.observation_space.shape, dtype=np.uint8)
        frame.reshape(-1)[:2] = divmod(self.frame_id, 256)
        return frame

    def reset(self, *, seed=None, options=None):
        return self._frame(), {}

    def step(self, action):
        return self._frame(), float(self.rng.normal()), bool(self.rng.uniform() < 0.1), False, {}


def run_frame_env(venv, buffer: RainbowReplayBuffer, n_adds: int):
    """What SB3's OffPolicyAlgorithm feeds the buffer (next_obs = terminal_observation at episode ends)."""
    venv.seed(0)
    obs = venv.reset()
    records: list[list[dict]] = [[] for _ in range(venv.num_envs)]
    for _ in range(n_adds):
        action = np.random.randint(0, 2, size=venv.num_envs)
        new_obs, reward, done, infos = venv.step(action)
        next_obs = new_obs.copy()
        for env in range(venv.num_envs):
            if done[env]:
                next_obs[env] = infos[env]["terminal_observation"]
        buffer.add(obs, next_obs, action, reward, done, infos)
        for env in range(venv.num_envs):
            trunc = bool(infos[env].get("TimeLimit.truncated", False))
            records[env].append(
                dict(obs=obs[env].copy(), next_obs=next_obs[env].copy(), action=action[env], reward=float(reward[env]),
                     term=bool(done[env]) and not trunc, trunc=trunc)
            )  # fmt: skip
        obs = new_obs
    return records


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("n_adds", [25, 95])  # 95 > 30: wraps around, the oldest stacks lost frames
def test_frame_stack_rebuilds_what_vec_frame_stack_produced(channels_first: bool, n_envs: int, n_adds: int) -> None:
    np.random.seed(0)
    channels = 1 if channels_first else 3
    venv = DummyVecEnv([lambda i=i: gym.wrappers.TimeLimit(FrameEnv(i, channels_first, channels), 7) for i in range(n_envs)])
    if channels_first:
        venv = VecFrameStack(venv, n_stack=4, channels_order="first")
    else:
        venv = VecTransposeImage(VecFrameStack(venv, n_stack=4))  # the Atari way: stack last, then transpose
    assert venv.observation_space.shape == (4 * channels, 14, 15)
    buffer = RainbowReplayBuffer(30 * n_envs, venv.observation_space, venv.action_space, "cpu", n_envs, n_steps=3, gamma=0.9, frame_stack=4)
    assert buffer.frames.shape == (30, n_envs, channels, 14, 15)  # one frame per slot
    records = run_frame_env(venv, buffer, n_adds)
    assert any(r["trunc"] for r in records[0]) and any(r["term"] for r in records[0])
    assert check_all_sampleable(records, buffer) > 15 * n_envs
    batch = buffer.sample(32)
    assert batch.observations.dtype == th.uint8 and batch.observations.shape == (32, 4 * channels, 14, 15)


def test_infer_frame_stack_from_wrappers() -> None:
    last = lambda: DummyVecEnv([lambda: FrameEnv(0, channels_first=False)])  # noqa: E731
    first = lambda: DummyVecEnv([lambda: FrameEnv(0, channels_first=True)])  # noqa: E731
    assert infer_frame_stack(VecTransposeImage(VecFrameStack(last(), n_stack=4))) == 4  # the Atari way
    assert infer_frame_stack(VecFrameStack(first(), n_stack=3, channels_order="first")) == 3
    assert infer_frame_stack(VecFrameStack(last(), n_stack=4)) == 1  # stacked channel-last: plain layout
    assert infer_frame_stack(VecTransposeImage(last())) == 1 and infer_frame_stack(None) == 1
    assert infer_frame_stack(VecFrameStack(DummyVecEnv([lambda: gym.make("CartPole-v1")]), n_stack=2)) == 2


def test_frame_stack_consistency_check_raises() -> None:
    venv = DummyVecEnv([lambda: FrameEnv(0, channels_first=True, channels=2)])
    stacked = VecFrameStack(venv, n_stack=2, channels_order="first")  # (4, 14, 15): 2 frames of 2 channels
    wrong = RainbowReplayBuffer(100, stacked.observation_space, stacked.action_space, "cpu", frame_stack=4)
    with pytest.raises(ValueError, match="frame_stack=4"):
        run_frame_env(stacked, wrong, 3)
    assert wrong.pos == 0 and wrong.tree.total == 0 and not wrong.frames.any()  # nothing written
    raw = DummyVecEnv([lambda: FrameEnv(0, channels_first=True, channels=4)])  # not stacked at all
    with pytest.raises(ValueError, match="frame_stack=2"):
        run_frame_env(raw, RainbowReplayBuffer(100, raw.observation_space, raw.action_space, "cpu", frame_stack=2), 3)
    right = RainbowReplayBuffer(100, stacked.observation_space, stacked.action_space, "cpu", frame_stack=2)
    run_frame_env(stacked, right, 30)
    with pytest.raises(ValueError, match="divisible"):
        RainbowReplayBuffer(100, spaces.Box(0, 255, (3, 5, 5), np.uint8), spaces.Discrete(2), frame_stack=2)


def test_bad_arguments_raise_value_errors() -> None:
    box, disc = spaces.Box(0, 1, (2,), np.float32), spaces.Discrete(2)
    bad = [
        (dict(n_steps=0), "n_steps"),
        (dict(gamma=1.5), "gamma"),
        (dict(frame_stack=0), "frame_stack"),
        (dict(alpha=-1.0), "alpha"),
        (dict(priority_eps=-1.0), "priority_eps"),
        (dict(optimize_memory_usage=True, handle_timeout_termination=False), "optimize_memory_usage"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            RainbowReplayBuffer(100, box, disc, **kwargs)
    small = RainbowReplayBuffer(4, box, disc, n_steps=3)  # built (a model loaded only to act), refused when fed
    with pytest.raises(ValueError, match="buffer_size"):
        small.add(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    with pytest.raises(ValueError, match="Dict"):
        RainbowReplayBuffer(100, spaces.Dict({"a": box}), disc)
    buffer = terminal_steps_buffer(3)
    with pytest.raises(ValueError, match="beta"):
        buffer.sample(4, beta=1.5)
    with pytest.raises(ValueError, match="finite"):
        buffer.update_priorities(np.arange(3), np.array([1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="indices"):
        buffer.update_priorities(np.array([10_000]), np.array([1.0]))
    with pytest.raises(ValueError, match="no complete n-step transition"):
        vector_buffer().sample(4)


# ----------------------------------------------------------------------------- save / load, memory


def test_pickle_round_trip_resumes_exactly(tmp_path) -> None:
    np.random.seed(5)
    venv = VecTransposeImage(VecFrameStack(DummyVecEnv([lambda i=i: FrameEnv(i, False) for i in range(2)]), n_stack=4))
    buffer = RainbowReplayBuffer(60, venv.observation_space, venv.action_space, "cpu", 2, frame_stack=4)
    run_frame_env(venv, buffer, 40)
    batch = buffer.sample(8)
    buffer.update_priorities(batch.indices, np.random.uniform(0, 3, size=8))
    save_to_pkl(tmp_path / "replay.pkl", buffer)
    loaded = load_from_pkl(tmp_path / "replay.pkl")
    assert isinstance(loaded, RainbowReplayBuffer)
    copy = pickle.loads(pickle.dumps(buffer))
    state = np.random.get_state()
    for other in (loaded, copy):
        np.random.set_state(state)
        a = buffer.sample(32, beta=0.4)
        np.random.set_state(state)
        b = other.sample(32, beta=0.4)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # and adding continues identically (same env state replayed into both)
    obs = np.zeros((2, *venv.observation_space.shape), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fresh episode start without done: cut as truncation in both
        for buf in (buffer, loaded):
            buf.add(obs, obs, np.zeros(2), np.zeros(2), np.array([True, False]), [{}, {}])
    np.random.set_state(state)
    a = buffer.sample(32)
    np.random.set_state(state)
    b = loaded.sample(32)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.next_observations.numpy(), b.next_observations.numpy())


def test_atari_scale_storage_fits_in_7_5_gb() -> None:
    """1M transitions of 4x84x84: np.zeros only reserves address space, so building it here is cheap."""
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not enough memory available" on a small machine
        buffer = RainbowReplayBuffer(1_000_000, obs_space, spaces.Discrete(18), "cpu", n_envs=1, frame_stack=4)
    assert buffer.frames.nbytes == 1_000_000 * 84 * 84
    assert buffer.storage_nbytes() <= 7.5e9
    assert buffer.storage_nbytes() - buffer.frames.nbytes < 0.1e9  # everything else is small
    # the plain layout would store 4 frames per slot, SB3's NStepReplayBuffer 8
    plain = RainbowReplayBuffer(1000, obs_space, spaces.Discrete(18), "cpu", frame_stack=1)
    assert plain.frames.nbytes == 1000 * 4 * 84 * 84


def test_plugs_into_sb3_off_policy_algorithm(tmp_path) -> None:
    """OffPolicyAlgorithm builds, fills, samples, saves and reloads it (SB3's DQN consumes `discounts`)."""
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=500, learning_starts=200, train_freq=8, seed=0, device="cpu",
                replay_buffer_class=RainbowReplayBuffer, replay_buffer_kwargs=dict(n_steps=3, gamma=0.99))  # fmt: skip
    model.learn(300)
    buffer = model.replay_buffer
    n = model.num_timesteps  # 300 rounded up to train_freq
    assert isinstance(buffer, RainbowReplayBuffer) and buffer.size() == n
    assert buffer.dones[:n].sum() >= 5 and buffer.final_index[:n].max() >= 0  # CartPole episodes ended
    model.save_replay_buffer(tmp_path / "replay")
    model.load_replay_buffer(tmp_path / "replay")
    assert isinstance(model.replay_buffer, RainbowReplayBuffer) and model.replay_buffer.size() == n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # learn() resets the env without a done: the last step is cut
        model.learn(300, reset_num_timesteps=False)
    assert model.replay_buffer.full and model.replay_buffer.sample(32).observations.shape == (32, 4)
