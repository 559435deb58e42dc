"""How well a codec does: measured on real files, compared with others.

metrics             PSNR, MS-SSIM, bits per pixel: every measurement's
measure             a codec coded for real on an image set, and the results
                    files (CompressAI's layout) that record it
baselines           classic codecs (JPEG, JPEG 2000, WebP, ...) through Pillow
reference_curves    published Kodak curves, from cited data files
rd_curves           RD curves: loading, plots, PSNR and BD-rate tables
bd_rate             BD-rate of one curve against another
comparison_picture  one crop as each codec decodes it, side by side
portability         files decoded as other machines would (other kernel
                    paths, thread counts), in subprocesses
"""

from balle.evaluation.measure import aggregate
from balle.evaluation.measure import CSV_FIELDS
from balle.evaluation.measure import evaluate_families
from balle.evaluation.measure import evaluate_models
from balle.evaluation.measure import image_set_hash
from balle.evaluation.measure import ImageResult
from balle.evaluation.measure import list_image_files
from balle.evaluation.measure import load_model
from balle.evaluation.measure import log_setting
from balle.evaluation.measure import measure_image
from balle.evaluation.measure import measure_model
from balle.evaluation.measure import measure_setting
from balle.evaluation.measure import models_by_family
from balle.evaluation.measure import models_document
from balle.evaluation.measure import named_images
from balle.evaluation.measure import RDPoint
from balle.evaluation.measure import read_results
from balle.evaluation.measure import result_from_dict
from balle.evaluation.measure import RESULT_KEYS
from balle.evaluation.measure import result_to_dict
from balle.evaluation.measure import results_document
from balle.evaluation.measure import safe_file_name
from balle.evaluation.measure import spread_per_family
from balle.evaluation.measure import write_csv
from balle.evaluation.measure import write_json
from balle.evaluation.metrics import bits_per_pixel
from balle.evaluation.metrics import ms_ssim
from balle.evaluation.metrics import ms_ssim_db
from balle.evaluation.metrics import mse_255
from balle.evaluation.metrics import psnr_rgb

__all__ = [
    "aggregate", "CSV_FIELDS", "evaluate_families", "evaluate_models",
    "image_set_hash", "ImageResult", "list_image_files", "load_model",
    "log_setting", "measure_image", "measure_model", "measure_setting",
    "models_by_family", "models_document", "named_images", "RDPoint",
    "read_results", "result_from_dict", "RESULT_KEYS", "result_to_dict",
    "results_document", "safe_file_name", "spread_per_family", "write_csv",
    "write_json", "bits_per_pixel", "ms_ssim", "ms_ssim_db", "mse_255",
    "psnr_rgb",
]
