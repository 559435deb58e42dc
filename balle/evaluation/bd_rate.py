"""BD-rate: how much rate one RD curve saves over another at equal quality.

BD-rate (Bjontegaard delta rate) of a test curve against an anchor is the
mean relative rate difference at equal quality,
    BD-rate = 10^(mean over D in [D_lo, D_hi] of (log10 R_test(D) -
              log10 R_anchor(D))) - 1      (in percent; negative = saves),
with log10 R(D) interpolated by PCHIP and [D_lo, D_hi] the overlap of the
two curves' quality ranges (the `bjontegaard` package, method "pchip").
Only points that raise the quality over every lower-rate point are used
(`monotone_points`), as R(D) must be a function; the overlap is returned
beside the value (`quality_overlap`) so that tables can mark a thin one.
"""

import math
import warnings


def monotone_points(points):
  """Points sorted by rate whose quality exceeds that of all cheaper points."""
  kept = []
  for bpp, value in sorted(points):
    if not kept or value > kept[-1][1]:
      if kept and bpp == kept[-1][0]:
        kept[-1] = (bpp, value)
      else:
        kept.append((bpp, value))
  return tuple(kept)


def quality_overlap(anchor, test):
  """Overlap of the two curves' quality ranges / their union, in [0, 1]."""
  if not anchor or not test:
    return 0.0
  a = [v for _, v in anchor]
  t = [v for _, v in test]
  union = max(max(a), max(t)) - min(min(a), min(t))
  overlap = min(max(a), max(t)) - max(min(a), min(t))
  return max(overlap, 0.0) / union if union > 0 else 0.0


def bd_rate(anchor, test):
  """(BD-rate of test vs anchor in percent, quality overlap fraction).

  anchor, test: ((bpp, quality), ...). NaN when a curve has fewer than two
  usable points or the quality ranges do not overlap.
  """
  import bjontegaard  # pylint: disable=import-outside-toplevel
  anchor = monotone_points(anchor)
  test = monotone_points(test)
  overlap = quality_overlap(anchor, test)
  if len(anchor) < 2 or len(test) < 2 or overlap <= 0:
    return math.nan, overlap
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    value = bjontegaard.bd_rate(
        [p[0] for p in anchor], [p[1] for p in anchor],
        [p[0] for p in test], [p[1] for p in test],
        method="pchip", require_matching_points=False, min_overlap=0)
  return float(value), overlap
