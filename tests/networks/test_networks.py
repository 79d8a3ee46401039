import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.networks import (
    MLP,
    ActorCritic,
    CategoricalHead,
    ConvTorso,
    QNetwork,
    RecurrentCore,
    TanhGaussianPolicy,
    TwinQ,
    ValueHead,
    activation_fn,
    make_torso,
)
from purerl.networks.heads import stack_torsos, unstack_torsos
from purerl.networks.torsos import StackedMLP, initializer


def test_mlp_flattens_image_observations():
    net = MLP((32,), "relu", num_obs_dims=3)
    obs = jnp.ones((5, 10, 10, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    chex.assert_shape(net.apply(params, obs), (5, 32))
    chex.assert_shape(params["params"]["Dense_0"]["kernel"], (400, 32))


def test_q_network_shapes_with_and_without_leading_batch():
    net = QNetwork(MLP((16,)), num_actions=3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    chex.assert_shape(net.apply(params, jnp.zeros((7, 4))), (7, 3))
    chex.assert_shape(net.apply(params, jnp.zeros((4,))), (3,))


def test_actor_critic_returns_a_categorical_and_a_value():
    net = ActorCritic(MLP((16, 16)), MLP((16, 16)), num_actions=2)
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    pi, value = net.apply(params, obs)
    assert isinstance(pi, distrax.Categorical)
    chex.assert_shape([pi.logits], (6, 2))
    chex.assert_shape(value, (6,))
    # The small policy-head init starts near uniform.
    np.testing.assert_allclose(pi.probs, 0.5, atol=0.05)
    np.testing.assert_allclose(net.apply(params, obs, method=ActorCritic.value), value)


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="Unknown activation 'sigmoidish'"):
        activation_fn("sigmoidish")


@pytest.mark.parametrize(
    "name, shape, torso",
    [
        ("auto", (4,), MLP),
        ("auto", (10, 10, 4), ConvTorso),  # MinAtar-sized grid -> the small CNN.
        ("auto", (2, 3, 3), MLP),  # Too small to convolve.
        ("auto", (30, 40, 3), ConvTorso),  # gymnax's Pong-misc: too small for Nature's.
        ("mlp", (10, 10, 4), MLP),
        ("minatar_cnn", (10, 10, 4), ConvTorso),
        ("cnn", (84, 84, 4), ConvTorso),
    ],
)
def test_torsos_by_name(name, shape, torso):
    net = make_torso(name, shape, (32,), "relu", layer_norm=True, kernel_init="lecun_normal")
    assert isinstance(net, torso)
    obs = jnp.ones((3,) + shape, jnp.uint8)
    params = net.init(jax.random.PRNGKey(0), obs)
    chex.assert_shape(net.apply(params, obs), (3, 32))
    assert any("LayerNorm" in k for k in params["params"])


def test_nature_cnn_layers_and_pixel_scaling():
    net = make_torso("cnn", (84, 84, 4), (512,))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 84, 84, 4), jnp.uint8))
    kernels = [params["params"][f"Conv_{i}"]["kernel"].shape for i in range(3)]
    assert kernels == [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64)]
    # 84 -> 20 -> 9 -> 7: 7 * 7 * 64 features into the dense layer.
    chex.assert_shape(params["params"]["Dense_0"]["kernel"], (3136, 512))
    pixels = jnp.full((1, 84, 84, 4), 255, jnp.uint8)
    np.testing.assert_allclose(
        net.apply(params, pixels), net.apply(params, jnp.ones((1, 84, 84, 4))), rtol=1e-5
    )


def test_auto_gives_atari_frames_the_nature_cnn_itself():
    # Whatever the agent's dense defaults (PPO's two tanh layers of 64), "auto" gives Atari
    # frames Nature's network: its convolutions, then one ReLU layer of 512.
    frames = jnp.full((2, 84, 84, 4), 128, jnp.uint8)
    with pytest.warns(UserWarning, match="--torso cnn"):  # What it does not use, said.
        net = make_torso("auto", (84, 84, 4), (64, 64), "tanh")
    params = net.init(jax.random.PRNGKey(0), frames)
    assert isinstance(net, ConvTorso) and net.activation == "relu"
    assert [k for k in params["params"] if k.startswith("Dense")] == ["Dense_0"]
    chex.assert_shape(params["params"]["Dense_0"]["kernel"], (3136, 512))
    assert float(net.apply(params, frames).min()) >= 0.0  # ReLU.
    # Naming the torso keeps the configured dense layers.
    own = make_torso("cnn", (84, 84, 4), (64, 64), "tanh")
    assert own.hidden_sizes == (64, 64) and own.activation == "tanh"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_cores_carry_state(cell):
    core = make_torso(cell, (4,), (16, 8), "tanh")
    assert isinstance(core, RecurrentCore) and core.cell_size == 8
    carry = core.initialize_carry(5)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    params = core.init(jax.random.PRNGKey(0), carry, obs)
    carry1, out1 = core.apply(params, carry, obs)
    chex.assert_shape(out1, (5, 8))
    _, out2 = core.apply(params, carry1, obs)
    # The same input gives a different output once the carry holds the past.
    assert not np.allclose(out1, out2)


def test_unknown_torso_and_initializer_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown torso 'transformer'"):
        make_torso("transformer", (4,))
    with pytest.raises(ValueError, match="Unknown kernel initializer 'zeros'"):
        initializer("zeros")
    with pytest.raises(ValueError, match="needs image observations"):
        make_torso("cnn", (4,))


def test_tanh_gaussian_policy_log_prob_by_hand():
    # A fixed mean and std: log pi(a) = log N(u; mu, s) - log(1 - tanh(u)^2), a = tanh(u).
    policy = TanhGaussianPolicy(MLP((8,)), action_dim=1)
    obs = jnp.zeros((1, 3))
    params = policy.init(jax.random.PRNGKey(0), obs)
    params = jax.tree.map(jnp.zeros_like, params)  # mean 0, log_std 0 -> std 1
    dist = policy.apply(params, obs)
    u = 0.5
    a = jnp.tanh(jnp.array([[u]]))
    expected = -0.5 * u**2 - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2)
    np.testing.assert_allclose(dist.log_prob(a), [expected], rtol=1e-5)
    sample, log_prob = dist.sample_and_log_prob(seed=jax.random.PRNGKey(1))
    assert np.all(np.abs(sample) < 1)
    np.testing.assert_allclose(log_prob, dist.log_prob(sample), rtol=1e-4, atol=1e-4)


def test_twin_q_has_two_independent_critics():
    critic = TwinQ((16, 16))
    obs, action = jnp.ones((5, 3)), jnp.ones((5, 2))
    params = critic.init(jax.random.PRNGKey(0), obs, action)
    q = critic.apply(params, obs, action)
    chex.assert_shape(q, (2, 5))
    assert not np.allclose(q[0], q[1])


@pytest.mark.parametrize("kernel, stride, size", [(3, 1, 10), (8, 4, 84), (4, 2, 20)])
def test_patch_convolution_equals_flax_conv(kernel, stride, size):
    from purerl.networks.torsos import PatchConv

    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
    conv = nn.Conv(5, (kernel, kernel), (stride, stride), "VALID")
    params = conv.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # A non-zero bias too.
    patch = PatchConv(5, kernel, stride)
    np.testing.assert_allclose(patch.apply(params, x), conv.apply(params, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        PatchConv(5, 12, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 3)))


class _SeparateActorCritic(nn.Module):
    """The actor-critic as two MLP torsos apart, each named as `ActorCritic` names it."""

    layer_norm: bool

    @nn.compact
    def __call__(self, obs):
        actor = MLP((16, 8), layer_norm=self.layer_norm, name="actor_torso")(obs)
        critic = MLP((16, 8), layer_norm=self.layer_norm, name="critic_torso")(obs)
        return CategoricalHead(3, name="policy_head")(actor), ValueHead(name="value_head")(critic)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_stacked_torsos_equal_separate_ones_in_outputs_and_gradients(layer_norm):
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    actions = jnp.array([0, 1, 2, 0, 1, 2])
    separate = _SeparateActorCritic(layer_norm)
    params = separate.init(jax.random.PRNGKey(0), obs)
    params = jax.tree.map(lambda p: p + 0.1, params)  # Non-zero biases and LayerNorm shifts.
    torso = MLP((16, 8), layer_norm=layer_norm)
    net = ActorCritic(torso, torso, 3, stack=True)
    stacked = stack_torsos(params)
    chex.assert_trees_all_equal(unstack_torsos(stacked), params)
    assert net.stacked and set(stacked["params"]) == {"torsos", "policy_head", "value_head"}
    chex.assert_trees_all_equal_shapes(stacked, net.init(jax.random.PRNGKey(0), obs))

    def loss(p, module):
        pi, value = module.apply(p, obs)
        return jnp.sum(pi.log_prob(actions)) + jnp.sum(jnp.square(value))

    (pi_s, v_s), (pi, v) = separate.apply(params, obs), net.apply(stacked, obs)
    np.testing.assert_allclose(pi.logits, pi_s.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, v_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.apply(stacked, obs, method=ActorCritic.value), v_s, atol=1e-6)
    policy = net.apply(stacked, obs, method=ActorCritic.policy)
    np.testing.assert_allclose(policy.logits, pi_s.logits, atol=1e-6)
    grads_s = stack_torsos(jax.grad(loss)(params, separate))
    chex.assert_trees_all_close(jax.grad(loss)(stacked, net), grads_s, rtol=1e-5, atol=1e-6)


def test_stacked_mlp_members_start_apart_each_initialised_as_an_mlp():
    net = StackedMLP(2, (8, 8))
    params = net.init(jax.random.PRNGKey(0), jnp.ones((1, 8)))
    kernel = params["params"]["Dense_1"]["kernel"]
    chex.assert_shape(kernel, (2, 8, 8))
    assert not np.allclose(kernel[0], kernel[1])
    for member in kernel:  # Orthogonal with gain sqrt(2), as MLP's hidden layers.
        np.testing.assert_allclose(member.T @ member, 2 * np.eye(8), atol=1e-5)


def test_torsos_that_differ_stay_apart_and_alike_ones_stack_when_asked():
    assert not ActorCritic(MLP((16,)), MLP((16,)), 2).stacked
    assert ActorCritic(MLP((16,)), MLP((16,)), 2, stack=True).stacked
    obs = jnp.ones((2, 4))
    for net in (
        ActorCritic(MLP((16,)), MLP((8,)), 2),
        ActorCritic(MLP((16,)), MLP((16,)), 2, stack=False),
    ):
        params = net.init(jax.random.PRNGKey(0), obs)
        assert not net.stacked and {"actor_torso", "critic_torso"} <= set(params["params"])


@pytest.mark.parametrize("rows", [8, 256, 512])
def test_dense_dot_general_matches_dot_general_with_its_gradients(rows):
    from purerl.networks.torsos import dense_dot_general

    x_key, k_key, g_key = jax.random.split(jax.random.PRNGKey(rows), 3)
    x = jax.random.normal(x_key, (2, rows // 2, 6))  # Leading axes fold into the rows.
    kernel = jax.random.normal(k_key, (6, 5))
    g = jax.random.normal(g_key, (2, rows // 2, 5))
    dims = (((2,), (0,)), ((), ()))

    def loss(product):
        return lambda x, kernel: jnp.sum(product(x, kernel, dims) * g)

    expected = jax.grad(loss(jax.lax.dot_general), argnums=(0, 1))(x, kernel)
    grads = jax.jit(jax.grad(loss(dense_dot_general), argnums=(0, 1)))(x, kernel)
    np.testing.assert_allclose(dense_dot_general(x, kernel, dims), x @ kernel, rtol=1e-5)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Under vmap too (SAC's twin critics are a vmapped MLP).
    batched = jax.vmap(jax.grad(loss(dense_dot_general), argnums=1), in_axes=(None, 0))
    np.testing.assert_allclose(
        batched(x, jnp.stack([kernel, kernel]))[1], expected[1], rtol=1e-4, atol=1e-4
    )
