"""Function-preserving warm starts of a trained bls2017 model: widening it
to more filters (`widen`) and rescaling its latents (`rescale_latents`),
both without changing its reconstruction. Specific to that architecture
(balle.models.bls2017, whose `widen_from` and `rescale_latents` call these):
it knows how its kernels, GDN and prior parameters are laid out.

The ladder's upper rates want N = 192 filters where the campaign's anchor has
N = 128. Training N = 192 from scratch would throw the anchor's CPU-hours
away; instead the narrow model is embedded in a wide one (as in Net2Net,
Chen et al. 2016, "function-preserving" widening):

- every weight of the narrow model is copied into the leading channels of
  the wide one;
- weights from a new channel into an old one are zero, so old channels
  compute exactly what they computed before: the reconstruction is
  unchanged;
- everything else (old -> new and new -> new weights, the GDN and prior
  parameters of new channels) keeps the wide model's fresh initialization,
  which breaks the symmetry between the new channels. GDN's coupling of an
  old with a new channel starts at gamma = 0 (tfc's initialization is
  0.1 * identity), so normalization of old channels is unchanged too.

New latent channels (M grows, with N or alone through `latent_channels`)
start silent: their g_a weights are scaled by NEW_LATENT_GAIN and their
prior is narrowed by PRIOR_NARROWING, so they carry ~nothing and cost
~nothing (a noisy latent of ~0 under a density much narrower than the
noise), and g_s reads them with zero weights. Whether training switches
them on is the question: in the diagnosis arm `latents192` (2,000 steps
from the anchor, docs/campaign.md "Diagnosis") it did not. Their latents
stayed at an RMS of 0.003 against the quantization step of 1, coding 0 bits:
a near-saddle, since g_s sees them only through the training noise. Before
this, new latents were random projections coded under a fresh prior: the
anchor (N = 128, lambda 0.025) widened to 192 and fine-tuned at lambda
0.0483 still spent 2.2 training bpp after 1,500 steps, so the campaign's
ladder stays at N = 128 (docs/campaign.md, "Making the ladder"). Between
the two (new latents of std ~1 under a prior of that width) is untried.
"""

import dataclasses

import numpy as np
import tensorflow as tf

_KERNEL_SUFFIXES = ("/kernel_real", "/kernel_imag")


def _is_trainable_weight(name):
  return not name.startswith("continuous_batched_entropy_model/")


def widen(narrow, wide):
  """Assigns `narrow`'s weights into the wider, freshly built `wide`.

  Both are FactorizedPriorModel of the same channels and GDN form, with at
  least as many filters N and latent channels M in `wide`. Kernels are
  stored (in, out, ...); biases, GDN and prior parameters have channels
  leading. New latent channels start silent (module doc).
  """
  if not narrow.ARCHITECTURE == wide.ARCHITECTURE == "bls2017":
    raise ValueError("widen: only bls2017 (factorized prior) models")
  n, c = narrow.config, wide.config
  if (n.channels, n.gdn_form) != (c.channels, c.gdn_form):
    raise ValueError("widen: channels and gdn_form must match")
  if c.num_filters < n.num_filters:
    raise ValueError(f"widen: {c.num_filters} filters < {n.num_filters}")
  if c.num_latent_channels < n.num_latent_channels:
    raise ValueError(f"widen: {c.num_latent_channels} latent channels < "
                     f"{n.num_latent_channels}")
  source = narrow.named_weights()
  for name, variable in wide.named_weights().items():
    if not _is_trainable_weight(name):
      continue
    old = source[name].numpy()
    value = variable.numpy().copy()
    value[tuple(slice(0, size) for size in old.shape)] = old
    if name.endswith(_KERNEL_SUFFIXES):
      value[old.shape[0]:, :old.shape[1]] = 0  # new -> old channels
    variable.assign(value)
  _silence_latents(wide, first=n.num_latent_channels)


def widened_copy(narrow, num_filters, seed=0, latent_channels=0):
  """A new (unfrozen) model with `num_filters` filters (and M =
  `latent_channels`, 0: N) computing `narrow`'s reconstruction; its new
  weights are drawn with `seed`."""
  tf.random.set_seed(seed)
  wide = type(narrow)(dataclasses.replace(
      narrow.config, num_filters=num_filters, latent_channels=latent_channels,
      name=""))
  widen(narrow, wide)
  return wide


# The layers on either side of the latents and the prior's input layer.
_LAST_ANALYSIS = "conv_2/"
_FIRST_SYNTHESIS = "deconv_0/"
_PRIOR_INPUT_MATRIX = "DeepFactorized/matrix_0"
# New latent channels: g_a's weights into them times NEW_LATENT_GAIN, their
# prior density p(y) -> k p(k y) with k = PRIOR_NARROWING (a fresh prior
# spans ~+-10, narrowed ~+-0.01: a noisy ~0 latent costs ~0.01 bit).
NEW_LATENT_GAIN = 1e-2
PRIOR_NARROWING = 1e3


def _scale_prior_input(variable, factor, channels=slice(None)):
  """p(y) -> p(y / factor) / factor for `channels` of the prior, by scaling
  its first (softplus-parameterized) matrix by 1 / factor."""
  value = variable.numpy()
  scaled = np.logaddexp(0, value[channels]) / factor  # softplus
  value[channels] = scaled + np.log(-np.expm1(-scaled))  # its inverse
  variable.assign(value)


def _silence_latents(model, first):
  """Latent channels `first`.. of `model` carry and cost ~nothing."""
  if first >= model.config.num_latent_channels:
    return
  for name, variable in model.named_weights().items():
    if name.startswith(_LAST_ANALYSIS):
      value = variable.numpy()  # bias (M,) or kernel (N, M, ...)
      outputs = (slice(None),) * (value.ndim > 1) + (slice(first, None),)
      value[outputs] *= NEW_LATENT_GAIN
      variable.assign(value)
    elif name == _PRIOR_INPUT_MATRIX:
      _scale_prior_input(variable, 1 / PRIOR_NARROWING, slice(first, None))


def rescale_latents(model, factor):
  """Multiplies the latents of `model` (unfrozen) by `factor` in place.

  g_a's last convolution (kernel and bias) is multiplied by s = `factor`,
  g_s's first divided by it, so g_s(s y / s) = g_s(y): the reconstruction
  of continuous latents is unchanged. The prior's density is stretched to
  p_s(y) = p(y / s) / s by dividing its first layer's (softplus-
  parameterized) matrix by s. What changes is the rounding, which becomes s
  times finer relative to the latents: at high rate the MSE is proportional
  to the squared quantization step and its optimum to 1 / lambda, so a
  fine-tune from lambda_0 to lambda_1 starts nearer its optimum with
  s = sqrt(lambda_1 / lambda_0) (docs/campaign.md, "Diagnosis").
  """
  if factor <= 0:
    raise ValueError(f"rescale_latents: factor must be > 0, got {factor}")
  for name, variable in model.named_weights().items():
    if name.startswith(_LAST_ANALYSIS):
      variable.assign(variable * factor)
    elif name.startswith(_FIRST_SYNTHESIS) and name.endswith(
        _KERNEL_SUFFIXES):
      variable.assign(variable / factor)
    elif name == _PRIOR_INPUT_MATRIX:
      _scale_prior_input(variable, factor)
