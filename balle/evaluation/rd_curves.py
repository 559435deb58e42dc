"""Rate-distortion curves: loading, plots, the interpolated PSNR table and
the BD-rate table (BD-rate itself: balle.evaluation.bd_rate).

A curve is a set of (bpp, PSNR dB) and (bpp, MS-SSIM) points. For tables:

- PSNR at a rate r is linear interpolation in bpp between the two nearest
  points (blank when r is outside the curve's range: no extrapolation);
  `value_at_log_bpp` interpolates linearly in log(bpp) instead (the campaign's
  gaps to reference curves).
- A BD-rate whose quality overlap is below MIN_OVERLAP (75%) of the union of
  the quality ranges is marked with "*" in the table.

Which curves the tables compare against (the anchors) and which published
curves are drawn are the caller's choice (experiments/kodak.py for the
project's Kodak report).
"""

import dataclasses
import math
import os

import numpy as np

from balle.evaluation import reference_curves
from balle.evaluation.bd_rate import bd_rate
from balle.io import safe_write

MODEL, MEASURED, PUBLISHED = "model", "measured", "published"
TABLE_RATES_BPP = (0.25, 0.5, 1.0)
MIN_OVERLAP = 0.75
METRICS = {"psnr": "PSNR", "ms_ssim_db": "MS-SSIM dB"}  # name: table title

# Colors shared by the measured and published curves of one codec family.
FAMILY_COLORS = {
    "jpeg420": "tab:blue", "jpeg444": "tab:cyan", "j2k": "tab:green",
    "j2k53": "tab:olive", "webp": "tab:purple", "avif": "tab:orange",
    "bpg444": "tab:brown", "heic": "tab:pink", "balle2017": "tab:red",
    "balle2018": "tab:gray", "compressai-factorized": "tab:pink",
}
MODEL_COLORS = ("black", "crimson", "navy", "darkgreen")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")


@dataclasses.dataclass(frozen=True)
class Curve:
  """RD points of one codec or model; kind is MODEL, MEASURED or PUBLISHED."""
  label: str
  kind: str
  psnr_rgb: tuple      # ((bpp, dB), ...)
  ms_ssim_rgb: tuple   # ((bpp, MS-SSIM in [0, 1]), ...)
  family: str = ""
  point_names: tuple = ()  # ((bpp, setting name), ...), e.g. model names
  source: str = ""  # where a published curve comes from

  def ms_ssim_db(self):
    """((bpp, -10 log10(1 - MS-SSIM)), ...)."""
    return tuple((bpp, -10.0 * math.log10(1.0 - value))
                 for bpp, value in self.ms_ssim_rgb if value < 1.0)

  def points(self, metric):
    """((bpp, quality), ...) for a metric of METRICS."""
    if metric == "psnr":
      return self.psnr_rgb
    if metric == "ms_ssim_db":
      return self.ms_ssim_db()
    raise ValueError(f"unknown metric {metric!r}; choose from {list(METRICS)}")


@dataclasses.dataclass(frozen=True)
class Anchor:
  """A reference curve of the tables: the first curve of `family` and
  `kind`. markdown_table gives one BD-rate column per metric of `metrics`,
  titled "BD-rate vs <name>, <metric>"; operating_points_table gives the
  anchor's PSNR at each model point."""
  family: str
  kind: str
  name: str
  metrics: tuple = ("psnr",)


def _finite_points(bpps, values):
  return tuple(sorted(
      (float(b), float(v)) for b, v in zip(bpps, values)
      if b is not None and v is not None and math.isfinite(b) and
      math.isfinite(v) and b > 0))


def curve_from_results(document, kind=MEASURED):
  """Curve from a CompressAI-layout results dict (balle.evaluation)."""
  results = document["results"]
  bpp = results["bpp"]
  return Curve(
      label=document["name"], kind=document.get("kind", kind),
      psnr_rgb=_finite_points(bpp, results.get("psnr-rgb", [])),
      ms_ssim_rgb=_finite_points(bpp, results.get("ms-ssim-rgb", [])),
      family=document.get("codec", ""),
      point_names=tuple(zip(bpp, document.get("settings", ()))))


def curve_from_published(published):
  """Curve from a reference_curves.PublishedCurve."""
  return Curve(label=published.label, kind=PUBLISHED,
               psnr_rgb=tuple(published.psnr_rgb),
               ms_ssim_rgb=tuple(published.ms_ssim_rgb),
               family=published.family, source=published.source)


def published_curves(keys):
  """Curves for the given reference_curves keys, in that order."""
  return [curve_from_published(reference_curves.load(key)) for key in keys]


# -- numbers ------------------------------------------------------------------


def value_at(points, bpp):
  """Linear interpolation of value at `bpp`; NaN outside the points' range."""
  if len(points) < 1:
    return math.nan
  rates = np.array([p[0] for p in points])
  values = np.array([p[1] for p in points])
  order = np.argsort(rates)
  rates, values = rates[order], values[order]
  if bpp < rates[0] or bpp > rates[-1]:
    return math.nan
  return float(np.interp(bpp, rates, values))


def value_at_log_bpp(points, bpp):
  """Quality at `bpp`, linear in log(bpp) between the two nearest points:
      v(r) = v0 + (v1 - v0) * (ln r - ln r0) / (ln r1 - ln r0),  r0 <= r <= r1
  (PSNR is close to linear in log rate). NaN outside the points' rate range
  (no extrapolation), for bpp <= 0, or without points."""
  points = sorted((float(r), float(v)) for r, v in points
                  if r > 0 and math.isfinite(r) and math.isfinite(v))
  if not points or not bpp > 0:
    return math.nan
  log_rates = np.log([r for r, _ in points])
  log_bpp = math.log(bpp)
  if log_bpp < log_rates[0] or log_bpp > log_rates[-1]:
    return math.nan
  return float(np.interp(log_bpp, log_rates, [v for _, v in points]))


# -- table --------------------------------------------------------------------


def _format(value, digits, suffix=""):
  return "" if not math.isfinite(value) else f"{value:.{digits}f}{suffix}"


def _format_bd(value_and_overlap):
  value, overlap = value_and_overlap
  if not math.isfinite(value):
    return ""
  return f"{value:+.1f}%" + ("*" if overlap < MIN_OVERLAP else "")


def find_anchor(curves, family, kind):
  """The first curve of the given family and kind, or None."""
  for curve in curves:
    if curve.family == family and curve.kind == kind:
      return curve
  return None


def markdown_table(curves, anchors, rates_bpp=TABLE_RATES_BPP):
  """Markdown table: PSNR at `rates_bpp` and BD-rates against each Anchor
  per curve (blank where the anchor is not among `curves`)."""
  columns = [(find_anchor(curves, anchor.family, anchor.kind), metric)
             for anchor in anchors for metric in anchor.metrics]
  header = (["Curve", "Kind"] +
            [f"PSNR @ {r:g} bpp (dB)" for r in rates_bpp] +
            [f"BD-rate vs {anchor.name}, {METRICS[metric]}"
             for anchor in anchors for metric in anchor.metrics])
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
  for curve in curves:
    row = [curve.label, curve.kind]
    row += [_format(value_at(curve.psnr_rgb, r), 2) for r in rates_bpp]
    row += [_format_bd(bd_rate(reference.points(metric), curve.points(metric)))
            if reference is not None else "" for reference, metric in columns]
    lines.append("| " + " | ".join(row) + " |")
  notes = [
      "",
      "PSNR: RGB PSNR averaged over images, linearly interpolated in bpp; "
      "blank outside a curve's measured range. BD-rate: Bjontegaard delta "
      "rate (PCHIP, `bjontegaard` package) over the overlapping quality "
      "range; negative means fewer bits than the anchor at equal quality. "
      f"* = quality ranges overlap by less than {MIN_OVERLAP:.0%}.",
  ]
  return "\n".join(lines + notes) + "\n"


def consistency_table(curves, rate_bpp=0.5):
  """Markdown rows comparing each measured codec with the published curve of
  the same family (e.g. OpenJPEG 5/3 vs published j2k-opj5): PSNR at
  `rate_bpp` and BD-rate of measured vs published. Published curves come
  from `curves` or else from all of reference_curves. "" if there are none."""
  everything = curves + [curve_from_published(published)
                         for published in reference_curves.load_all()]
  rows = []
  for measured in curves:
    if measured.kind != MEASURED or not measured.family:
      continue
    published = find_anchor(everything, measured.family, PUBLISHED)
    if published is None:
      continue
    ours = value_at(measured.psnr_rgb, rate_bpp)
    theirs = value_at(published.psnr_rgb, rate_bpp)
    rows.append(f"| {measured.label} | {published.label} | "
                f"{_format(ours, 2)} | {_format(theirs, 2)} | "
                f"{_format(ours - theirs, 2)} | "
                f"{_format_bd(bd_rate(published.psnr_rgb, measured.psnr_rgb))}"
                " |")
  if not rows:
    return ""
  header = [
      f"| Measured | Published, same codec | PSNR @ {rate_bpp:g} bpp, "
      "measured (dB) | published (dB) | difference (dB) | BD-rate, measured "
      "vs published |",
      "|---|---|---:|---:|---:|---:|"]
  return "\n".join(header + rows) + "\n"


def operating_points_table(curves, anchors):
  """Markdown rows, one per point of every MODEL curve: its bpp, PSNR and
  MS-SSIM (dB), next to each Anchor's PSNR interpolated at the same bpp.
  Shows a single trained model (which has no curve, hence no interpolated
  PSNR or BD-rate) against the references. "" if there are no model
  curves."""
  references = [find_anchor(curves, anchor.family, anchor.kind)
                for anchor in anchors]
  references = [r for r in references if r is not None]
  rows = []
  for curve in curves:
    if curve.kind != MODEL:
      continue
    ms_ssim_db = dict(curve.ms_ssim_db())
    names = dict(curve.point_names)
    for bpp, psnr in curve.psnr_rgb:
      row = [str(names.get(bpp, curve.label)), f"{bpp:.4f}", f"{psnr:.2f}",
             _format(ms_ssim_db.get(bpp, math.nan), 2)]
      for reference in references:
        theirs = value_at(reference.psnr_rgb, bpp)
        row += [_format(theirs, 2), _format(psnr - theirs, 2)]
      rows.append("| " + " | ".join(row) + " |")
  if not rows:
    return ""
  header = ["Model", "bpp", "PSNR (dB)", "MS-SSIM (dB)"]
  for reference in references:
    header += [f"{reference.label} PSNR at that bpp (dB)", "difference (dB)"]
  lines = ["| " + " | ".join(header) + " |",
           "|---|" + "---:|" * (len(header) - 1)]
  return "\n".join(lines + rows) + "\n"


# -- plots --------------------------------------------------------------------


def _style(curve, model_index, marker_index):
  color = FAMILY_COLORS.get(curve.family)
  if curve.kind == MODEL:
    return dict(color=MODEL_COLORS[model_index % len(MODEL_COLORS)],
                linestyle="-", linewidth=2.4, marker="o", markersize=5,
                zorder=5)
  if curve.kind == PUBLISHED:
    return dict(color=color, linestyle="--", linewidth=1.4, marker=None,
                zorder=3)
  return dict(color=color, linestyle="-", linewidth=1.4,
              marker=_MARKERS[marker_index % len(_MARKERS)], markersize=4,
              markerfacecolor="none", zorder=4)


def plot_curves(curves, metric, path_stem, title, max_bpp=2.0):
  """Writes path_stem.png and path_stem.pdf; metric "psnr" or "ms_ssim_db"."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  if metric == "psnr":
    ylabel = "PSNR, RGB (dB)"
  elif metric == "ms_ssim_db":
    ylabel = "MS-SSIM, RGB (dB) = -10 log10(1 - MS-SSIM)"
  else:
    raise ValueError(f"unknown metric {metric!r}")
  figure, axes = pyplot.subplots(figsize=(10, 6.2))
  visible = []
  model_index = marker_index = 0
  # Published curves first so that measured ones draw on top in the legend.
  order = sorted(curves, key=lambda c: {MODEL: 0, MEASURED: 1,
                                        PUBLISHED: 2}.get(c.kind, 3))
  for curve in order:
    points = [p for p in curve.points(metric) if p[0] <= max_bpp * 1.05]
    if not points:
      continue
    style = _style(curve, model_index, marker_index)
    if curve.kind == MODEL:
      model_index += 1
    elif curve.kind == MEASURED:
      marker_index += 1
    label = (f"{curve.label} [measured]" if curve.kind == MEASURED
             else curve.label)
    axes.plot([p[0] for p in points], [p[1] for p in points], label=label,
              **style)
    visible += [p[1] for p in points]
  axes.set_xlim(0, max_bpp)
  if visible:
    low, high = min(visible), max(visible)
    axes.set_ylim(math.floor(low) - 0.5, math.ceil(high) + 0.5)
  axes.set_xlabel("Rate (bits per pixel, whole file)")
  axes.set_ylabel(ylabel)
  axes.set_title(title)
  axes.grid(True, which="major", alpha=0.5)
  axes.grid(True, which="minor", alpha=0.2)
  axes.minorticks_on()
  axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title="solid: measured here   dashed: published",
              title_fontsize=8, frameon=False)
  figure.tight_layout()
  directory = os.path.dirname(path_stem)
  if directory:
    os.makedirs(directory, exist_ok=True)
  paths = []
  for suffix in (".png", ".pdf"):
    safe_write.write_file_atomic(
        path_stem + suffix,
        lambda f, s=suffix: figure.savefig(f, format=s[1:], dpi=150),
        overwrite=True)
    paths.append(path_stem + suffix)
  pyplot.close(figure)
  return paths


def report_text(curves, title, anchors):
  """rd_table.md: the tables above, then the sources of published curves."""
  parts = [f"# {title}\n\n", markdown_table(curves, anchors)]
  operating_points = operating_points_table(curves, anchors)
  if operating_points:
    parts += ["\n## Trained models, point by point\n\n", operating_points]
  consistency = consistency_table(curves)
  if consistency:
    parts += ["\n## Measurement check: measured vs published, same codec\n\n",
              consistency]
  cited = dict.fromkeys(f"- {c.label}: {c.source}\n" for c in curves
                        if c.kind == PUBLISHED and c.source)
  if cited:
    parts.append("\nPublished curves (cited, not measured here):\n\n")
    parts += list(cited)
  return "".join(parts)


def write_report(curves, output_dir, title, anchors, max_bpp=2.0):
  """Both plots plus rd_table.md in `output_dir`, each file written
  atomically (replacing an older report); returns the written paths."""
  os.makedirs(output_dir, exist_ok=True)
  paths = plot_curves(curves, "psnr", os.path.join(output_dir, "rd_psnr"),
                      f"{title}: RGB PSNR vs rate", max_bpp)
  paths += plot_curves(curves, "ms_ssim_db",
                       os.path.join(output_dir, "rd_ms_ssim"),
                       f"{title}: RGB MS-SSIM vs rate", max_bpp)
  table_path = os.path.join(output_dir, "rd_table.md")
  text = report_text(curves, title, anchors)
  safe_write.write_file_atomic(table_path, lambda f: f.write(text.encode()),
                               overwrite=True)
  paths.append(table_path)
  return paths


def result_files(paths):
  """Results JSON files: the given files, plus *.json directly in folders."""
  files = []
  for path in paths:
    if os.path.isdir(path):
      files += sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.endswith(".json"))
    else:
      files.append(path)
  return files


def load_curves(paths):
  """Curves from results JSON files or folders of them (balle.evaluation)."""
  from balle import evaluation  # pylint: disable=import-outside-toplevel
  return [curve_from_results(evaluation.read_results(path))
          for path in result_files(paths)]
