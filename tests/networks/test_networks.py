import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.networks import MLP, ActorCritic, QNetwork, activation_fn


def test_mlp_flattens_image_observations():
    net = MLP((32,), "relu", num_obs_dims=3)
    obs = jnp.ones((5, 10, 10, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    chex.assert_shape(net.apply(params, obs), (5, 32))
    chex.assert_shape(params["params"]["Dense_0"]["kernel"], (400, 32))


def test_q_network_shapes_with_and_without_leading_batch():
    net = QNetwork(num_actions=3, hidden_sizes=(16,))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    chex.assert_shape(net.apply(params, jnp.zeros((7, 4))), (7, 3))
    chex.assert_shape(net.apply(params, jnp.zeros((4,))), (3,))


def test_actor_critic_returns_a_categorical_and_a_value():
    net = ActorCritic(num_actions=2, hidden_sizes=(16, 16))
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
