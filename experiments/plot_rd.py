"""Rate-distortion plots and table from results files and published curves.

    python -m experiments.plot_rd --results=results/kodak/models,results/kodak/baselines \
        --output_dir=results/kodak

Writes rd_psnr.{png,pdf}, rd_ms_ssim.{png,pdf} and rd_table.md (PSNR at 0.25,
0.5 and 1 bpp, BD-rates against the anchors of experiments/kodak.py: measured
JPEG 2000 9/7 and published Ballé 2017).
"""

from absl import app, flags, logging

from balle.evaluation import rd_curves
from balle.evaluation import reference_curves
from experiments import kodak

flags.DEFINE_list("results", [], "Results JSON files or folders of them.")
flags.DEFINE_list("references", list(kodak.PUBLISHED_CURVES),
                  f"Published curves, from {reference_curves.keys()}.")
flags.DEFINE_string("output_dir", "results/plots", "Where to write.")
flags.DEFINE_string("title", "Kodak", "Plot title prefix.")
flags.DEFINE_float("max_bpp", 2.0, "Right end of the rate axis.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  curves = rd_curves.load_curves(FLAGS.results)
  curves += rd_curves.published_curves(FLAGS.references)
  written = rd_curves.write_report(curves, FLAGS.output_dir, FLAGS.title,
                                   kodak.ANCHORS, FLAGS.max_bpp)
  logging.info("wrote %s", ", ".join(written))


if __name__ == "__main__":
  app.run(main)
