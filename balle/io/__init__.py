"""Images in and out, and writes that are atomic.

image_io    read_image / write_image: any image Pillow decodes to uint8
            [H, W, 1 or 3], checked (alpha, animations, size limits)
safe_write  write_file_atomic and staged_directory: a file or a whole folder
            written beside its destination and renamed into place
"""

from balle.io.image_io import DEFAULT_MAX_PIXELS
from balle.io.image_io import IMAGE_SUFFIXES
from balle.io.image_io import ImageConversionWarning
from balle.io.image_io import read_image
from balle.io.image_io import write_image
from balle.io.safe_write import check_writable
from balle.io.safe_write import staged_directory
from balle.io.safe_write import write_file_atomic

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageConversionWarning",
    "read_image", "write_image", "check_writable", "staged_directory",
    "write_file_atomic",
]
