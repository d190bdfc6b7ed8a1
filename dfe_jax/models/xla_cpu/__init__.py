"""The temporal conv model on kernels for XLA's CPU backend (`config.model.conv_impl="xla_cpu"`).

Custom gradients that avoid XLA:CPU's slow layout transposes, nearest upsampling folded into the
next conv's taps, the decoder's last two convs composed into one, and a ReLU with no constant
operand. Same parameters and, up to float32 rounding, the same values and gradients as
`models.temporal_conv`; only `models.get_model` imports this package.
"""

from dfe_jax.models.xla_cpu.temporal_conv import Conv
from dfe_jax.models.xla_cpu.temporal_conv import Decoder
from dfe_jax.models.xla_cpu.temporal_conv import Encoder

__all__ = ["Conv", "Decoder", "Encoder"]
