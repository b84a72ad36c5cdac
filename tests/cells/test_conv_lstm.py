"""ConvLSTM over one spatial axis and without peepholes (the two-axis peephole form is in test_modern_cells.py):
against the NumPy convolution loop of reference_modern.py, and stacked by channel count in ``jrnn.deep``."""

import jax
import numpy as np
import reference as ref
import reference_modern as refm

import jrnn

B, T, W, C_IN = 2, 4, 5, 3


def test_one_spatial_axis_without_peepholes_equals_numpy_and_stacks_by_channels():
    first, second = jrnn.conv_lstm(2, spatial_shape=(W,), kernel_size=3), jrnn.conv_lstm(3, (W,), 1, bias=False)
    net = jrnn.deep([first, second])
    params = ref.random_params(net, seed=0, input_size=C_IN)
    assert params[0].P is None and params[1].b is None and params[1].U.shape == (12, 2, 1)
    xs = ref.device(np.random.default_rng(1).standard_normal((B, T, W, C_IN)))
    lengths = np.array([4, 3], np.int32)
    ys, finals = jax.jit(lambda p, x, n: net.apply(p, x, lengths=n))(params, xs, ref.device(lengths, np.int32))
    zeros = [ref.state_rows(cell.initial_state((B,)), B) for cell in (first, second)]
    hidden, _ = refm.run_batch(lambda s, x: refm.conv_lstm_step(params[0], s, x), zeros[0], xs, lengths)
    want, want_finals = refm.run_batch(lambda s, x: refm.conv_lstm_step(params[1], s, x), zeros[1], hidden, lengths)
    np.testing.assert_allclose(ys, want, rtol=2e-5, atol=2e-5)
    ref.assert_states_close(finals[1], ref.stack_states(want_finals), rtol=2e-5, atol=2e-5)
