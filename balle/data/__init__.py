"""The images a run trains and validates on.

files           image file lists (patterns, folders, .txt lists), the
                validation hold-out, worker shards, decoding to arrays
patches         random training patches, drawn from images in memory
streaming       the same patches from files decoded on the fly (tf.data)
input_pipeline  which of the two a run uses, and its images (training_data)
photo_curation  folders of photographs curated into a clean training set
"""

from balle.data.files import crop_to_multiple
from balle.data.files import expand_patterns
from balle.data.files import image_files
from balle.data.files import load_images
from balle.data.files import read_channels
from balle.data.files import shard_files
from balle.data.files import split_validation
from balle.data.files import warn_skipped
from balle.data.input_pipeline import training_data
from balle.data.patches import MAX_DOWNSAMPLE
from balle.data.patches import PatchSampler
from balle.data.patches import draw_patch
from balle.data.streaming import PatchStream

__all__ = [
    "crop_to_multiple", "expand_patterns", "image_files", "load_images",
    "read_channels", "shard_files", "split_validation", "warn_skipped",
    "training_data", "MAX_DOWNSAMPLE", "PatchSampler", "draw_patch",
    "PatchStream",
]
