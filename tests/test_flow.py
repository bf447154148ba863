import jax
import jax.numpy as jnp
import numpy as np

from rql import flow


def velocity(obs, x, t):
    # A smooth, nonlinear, state- and time-dependent field.
    return jnp.sin(1.5 * x + obs[:, :1]) * (1.0 + t) - 0.5 * x


def test_reversal_then_forward_returns_close_and_error_shrinks_with_F():
    key = jax.random.PRNGKey(0)
    obs = jax.random.normal(key, (64, 3))
    a = jax.random.uniform(jax.random.PRNGKey(1), (64, 4), minval=-0.9, maxval=0.9)
    errors = []
    for F in (2, 4, 8, 16, 32):
        x0, t = flow.reverse(velocity, obs, a, jnp.ones(64), F)
        np.testing.assert_allclose(np.asarray(t), 0.0, atol=1e-5)
        back = flow.euler_sample(velocity, obs, x0, F, clip=False)
        errors.append(float(jnp.max(jnp.abs(back - a))))
    assert errors[-1] < 0.1 * errors[0] and errors[-1] < 0.1, errors
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:])), errors
    # First-order method: doubling F roughly halves the error.
    assert errors[-2] / errors[-1] > 1.5


def test_reversal_distance_zero_is_identity_and_partial_times():
    obs = jnp.zeros((6, 1))
    a = jnp.full((6, 2), 0.3)
    d = jnp.array([0.0, 0.1, 0.5, 1.0, 0.25, 0.75])
    x, t = flow.reverse(velocity, obs, a, d, 10)
    np.testing.assert_allclose(np.asarray(t[:, 0]), 1.0 - np.asarray(d), atol=1e-6)
    np.testing.assert_allclose(np.asarray(x[0]), [0.3, 0.3], atol=1e-7)
    assert float(jnp.abs(x[3] - a[3]).max()) > 0.05


def test_reversal_distances_halves():
    d = flow.reversal_distances(jax.random.PRNGKey(0), 1000, 10)
    cont, grid = np.asarray(d[:500]), np.asarray(d[500:])
    assert cont.min() >= 0 and cont.max() <= 1
    assert len(np.unique(np.round(cont, 6))) > 400  # continuous
    np.testing.assert_allclose(grid * 10, np.round(grid * 10), atol=1e-5)  # on the grid k/F
    assert set(np.round(grid * 10).astype(int)) == set(range(11))


def test_interpolant_and_one_step():
    x0, x1 = jnp.zeros((2, 3)), jnp.ones((2, 3))
    xt, v = flow.interpolate(x0, x1, jnp.array([[0.25], [1.0]]))
    np.testing.assert_allclose(np.asarray(xt), [[0.25] * 3, [1.0] * 3])
    np.testing.assert_allclose(np.asarray(v), 1.0)
    const = lambda o, x, t: jnp.ones_like(x)  # noqa: E731
    xn, tn = flow.one_step(const, jnp.zeros((2, 1)), xt, jnp.array([[0.25], [0.95]]), 10)
    np.testing.assert_allclose(np.asarray(tn[:, 0]), [0.35, 1.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(xn[:, 0]), [0.35, 1.05], atol=1e-6)
