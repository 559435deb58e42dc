"""From a model's coded sections to a .balle file and back.

file_format   the .balle format: header, section table, sections, checksum
              (pack/unpack, and pack_tf/unpack_tf, their TensorFlow-op twins)
range_coding  range decoding of untrusted sections, bounded and checked
pixels        the pixels a model codes and returns (channels, edge padding)
tiling        coding an image in tiles with halos (`TileCoder`, which each
              model family subclasses)
codec         images to .balle bytes and back with a frozen model, in tiles
export        a frozen model as a SavedModel that needs only TensorFlow and
              tfc

The models (balle.models) use the first four; codec and export use only a
model's CompressionModel interface, never a family's module.
"""

from balle.coding.codec import TILE_SIZE
from balle.coding.codec import compress_image
from balle.coding.codec import decompress_image
from balle.coding.export import export_saved_model
from balle.coding.file_format import FormatError
from balle.coding.file_format import Header
from balle.coding.file_format import Section
from balle.coding.file_format import pack
from balle.coding.file_format import unpack

__all__ = [
    "TILE_SIZE", "compress_image", "decompress_image", "export_saved_model",
    "FormatError", "Header", "Section", "pack", "unpack",
]
