import dataclasses

import gymnasium
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.core import (
    from_bounds,
    require_array_observations,
    require_positive,
    require_positive_fields,
    to_bounds,
)


def test_actions_map_to_the_bounds_and_back():
    low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
    a = jnp.array([[-1.0, 1.0], [0.5, 0.0]])
    # -2 + 0.5 * (a + 1) * 4 and 0 + 0.5 * (a + 1) * 1.
    np.testing.assert_allclose(to_bounds(a, low, high), [[-2.0, 1.0], [1.0, 0.5]])
    np.testing.assert_allclose(from_bounds(to_bounds(a, low, high), low, high), a)


def test_positive_integers_pass_and_others_are_named_in_the_error():
    assert require_positive(3, "num_envs") == 3
    with pytest.raises(ValueError, match="num_envs must be a positive integer; got 0"):
        require_positive(0, "num_envs")

    @dataclasses.dataclass(frozen=True)
    class MyConfig:
        num_envs: int = 2
        num_steps: int = -1

    require_positive_fields(MyConfig(num_steps=5), "num_envs", "num_steps")
    with pytest.raises(ValueError, match=r"MyConfig\.num_steps must be a positive integer"):
        require_positive_fields(MyConfig(), "num_envs", "num_steps")


def test_array_observations_give_their_shape_and_others_a_clear_error():
    box = gymnasium.spaces.Box(-1.0, 1.0, (4, 2))
    assert require_array_observations(box, "DQN") == (4, 2)
    text = gymnasium.spaces.Text(5)
    with pytest.raises(ValueError, match="DQN needs array observations"):
        require_array_observations(text, "DQN")
