"""Published rate-distortion curves on Kodak, read from cited data files.

Each file balle/reference_data/<key>.txt is one curve: `# field: value`
header lines give its label, codec family (shared with measured curves, for
plot colors), citation and source; other `#` lines are notes; then the
column line `bpp psnr_rgb_db ms_ssim_rgb` and one row per published point,
a mean over the 24 Kodak images (768x512, RGB) at one setting. PSNR is RGB
PSNR in dB, MS-SSIM the RGB MS-SSIM in [0, 1] (plot it in dB as
-10 log10(1 - x)).

These are other people's measurements, for comparison only; the project's
own numbers come from balle.evaluation and balle.evaluation.baselines.
"""

import dataclasses
import functools
import os

# balle/reference_data, package data beside balle/pretrained.
DATA_FOLDER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "reference_data")
FILE_SUFFIX = ".txt"
COLUMNS = ("bpp", "psnr_rgb_db", "ms_ssim_rgb")
HEADER_FIELDS = ("label", "family", "citation", "source")


@dataclasses.dataclass(frozen=True)
class PublishedCurve:
  """A published RD curve: (bpp, PSNR dB) and (bpp, MS-SSIM) points."""
  key: str
  family: str
  label: str
  citation: str
  source: str
  psnr_rgb: tuple
  ms_ssim_rgb: tuple


def keys():
  """Keys of the shipped curves (their file names without suffix), sorted."""
  return sorted(name[:-len(FILE_SUFFIX)] for name in os.listdir(DATA_FOLDER)
                if name.endswith(FILE_SUFFIX))


@functools.lru_cache(maxsize=None)
def load(key):
  """The curve in DATA_FOLDER/<key>.txt (KeyError naming the choices)."""
  path = os.path.join(DATA_FOLDER, key + FILE_SUFFIX)
  if not os.path.exists(path):
    raise KeyError(f"no published curve {key!r}; choose from {keys()}")
  with open(path, encoding="utf-8") as f:
    return parse(f.read(), key)


def load_all():
  """Every shipped curve, in key order."""
  return [load(key) for key in keys()]


def parse(text, key):
  """PublishedCurve from the text of a curve file (format: module doc)."""
  fields, rows, columns = {}, [], None
  for number, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if line.startswith("#"):
      name, colon, value = line[1:].partition(":")
      if colon and name.strip() in HEADER_FIELDS:
        fields[name.strip()] = value.strip()
    elif columns is None:
      columns = tuple(line.split())
      if columns != COLUMNS:
        raise ValueError(f"{key}: columns {columns}, expected {COLUMNS}")
    elif line:
      values = tuple(float(v) for v in line.split())
      if len(values) != len(COLUMNS):
        raise ValueError(f"{key}, line {number}: {len(values)} values, "
                         f"expected {len(COLUMNS)}")
      rows.append(values)
  missing = [name for name in HEADER_FIELDS if not fields.get(name)]
  if missing:
    raise ValueError(f"{key}: header lacks {', '.join(missing)}")
  if not rows:
    raise ValueError(f"{key}: no points")
  return PublishedCurve(
      key=key, **fields,
      psnr_rgb=tuple((bpp, psnr) for bpp, psnr, _ in rows),
      ms_ssim_rgb=tuple((bpp, ms_ssim) for bpp, _, ms_ssim in rows))
