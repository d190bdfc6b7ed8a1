"""1-D convolution in NWC layout with 'same' padding: `lax.conv_general_dilated` and its gradients.

Shape legend: B batch, T input frames, C input channels, O output channels, K kernel taps.
"""

import jax

_NWC = ("NWC", "WIO", "NWC")


def same_padding(kernel_size, dilation=1, stride=1):
  """(left, right) padding that keeps T frames (or gives T / stride): the smaller half left."""
  total = dilation * (kernel_size - 1) - (stride - 1)
  return total // 2, total - total // 2


def conv1d(x_BTC, kernel_KCO, dilation=1, stride=1):
  """Conv of x [B, T, C] with kernel [K, C, O], 'same' padded: [B, T / stride, O]."""
  padding = same_padding(kernel_KCO.shape[0], dilation, stride)
  return jax.lax.conv_general_dilated(x_BTC, kernel_KCO, (stride,), [padding],
                                      rhs_dilation=(dilation,), dimension_numbers=_NWC)
