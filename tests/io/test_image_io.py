import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from balle.io import image_io
from balle.io.image_io import ImageConversionWarning
from conftest import smooth_image


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_formats_round_trip(tmp_path, suffix):
  image = smooth_image(13, 21)
  path = str(tmp_path / f"image{suffix}")
  if suffix == ".webp":
    Image.fromarray(image).save(path, lossless=True)
  else:
    image_io.write_image(path, image)
  np.testing.assert_array_equal(image_io.read_image(path), image)


def test_gray_and_jpeg(tmp_path):
  gray = smooth_image(10, 12, channels=1)
  image_io.write_image(str(tmp_path / "g.png"), gray)
  assert image_io.read_image(str(tmp_path / "g.png")).shape == (10, 12, 1)
  Image.fromarray(smooth_image(16, 16)).save(tmp_path / "c.jpg", quality=90)
  assert image_io.read_image(str(tmp_path / "c.jpg")).shape == (16, 16, 3)


def test_palette_and_16_bit_are_converted_with_a_warning(tmp_path):
  Image.fromarray(smooth_image(8, 8)).convert("P").save(tmp_path / "p.png")
  with pytest.warns(ImageConversionWarning, match="palette"):
    assert image_io.read_image(str(tmp_path / "p.png")).shape == (8, 8, 3)
  deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
  Image.fromarray(deep).save(tmp_path / "d.png")
  with pytest.warns(ImageConversionWarning, match="8 bits"):
    pixels = image_io.read_image(str(tmp_path / "d.png"))
  np.testing.assert_array_equal(pixels[..., 0],
                                np.round(deep / 257.).astype(np.uint8))


def test_alpha_is_refused_unless_dropped(tmp_path):
  rgba = np.dstack([smooth_image(6, 7), np.full((6, 7), 200, np.uint8)])
  Image.fromarray(rgba).save(tmp_path / "a.png")
  with pytest.raises(ValueError, match="alpha"):
    image_io.read_image(str(tmp_path / "a.png"))
  with pytest.warns(ImageConversionWarning, match="alpha"):
    pixels = image_io.read_image(str(tmp_path / "a.png"), drop_alpha=True)
  np.testing.assert_array_equal(pixels, rgba[..., :3])


def test_non_images_are_refused(tmp_path):
  (tmp_path / "x.png").write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match="not an image"):
    image_io.read_image(str(tmp_path / "x.png"))
  with pytest.raises(FileNotFoundError):
    image_io.read_image(str(tmp_path / "missing.png"))


def test_existing_files_are_kept(tmp_path):
  path = tmp_path / "out.png"
  path.write_bytes(b"precious")
  with pytest.raises(FileExistsError, match="overwrite"):
    image_io.write_image(str(path), smooth_image(4, 4))
  assert path.read_bytes() == b"precious"
  image_io.write_image(str(path), smooth_image(4, 4), overwrite=True)
  assert image_io.read_image(str(path)).shape == (4, 4, 3)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def _png_header_only(width, height):
  """A PNG signature and IHDR claiming width x height RGB, without pixels:
  a decompression bomb's first bytes."""
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
          + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height,message", [
    (60000, 60000, "decompression bomb"),  # Pillow's own limit
    (12000, 12000, "above the limit"),  # below Pillow's, above ours
])
def test_decompression_bombs_are_refused(tmp_path, width, height, message):
  path = tmp_path / "bomb.png"
  path.write_bytes(_png_header_only(width, height))
  with pytest.raises(ValueError, match=message):
    image_io.read_image(str(path))


def test_pixel_limit_can_be_set(tmp_path):
  image_io.write_image(str(tmp_path / "s.png"), smooth_image(20, 30))
  with pytest.raises(ValueError, match="600 pixels is above the limit of 599"):
    image_io.read_image(str(tmp_path / "s.png"), max_pixels=599)
  assert image_io.read_image(str(tmp_path / "s.png"),
                             max_pixels=600).shape == (20, 30, 3)


def test_animations_and_multi_page_files_are_refused(tmp_path):
  frames = [Image.fromarray(smooth_image(8, 8, seed=s)) for s in range(3)]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  frames[0].save(tmp_path / "m.tiff", save_all=True, append_images=frames[1:])
  for name in ("a.gif", "m.tiff"):
    with pytest.raises(ValueError, match=f"{name}: file has 3 frames"):
      image_io.read_image(str(tmp_path / name))


@pytest.mark.parametrize("content", [
    b"", b"\x89PNG\r\n\x1a\n", b"II*\x00" + bytes(20), b"GIF89a\xff\xff",
    b"\xff\xd8\xff\xe0" + bytes(30)])
def test_empty_and_broken_files_are_value_errors(tmp_path, content):
  path = tmp_path / "broken.png"
  path.write_bytes(content)
  with pytest.raises(ValueError, match="broken.png"):
    image_io.read_image(str(path))


def test_cmyk_is_converted_with_a_warning(tmp_path):
  Image.fromarray(smooth_image(8, 8)).convert("CMYK").save(tmp_path / "c.tif")
  with pytest.warns(ImageConversionWarning, match="CMYK"):
    assert image_io.read_image(str(tmp_path / "c.tif")).shape == (8, 8, 3)


def test_output_suffix_is_checked(tmp_path):
  assert image_io.image_format("x.PNG") == "PNG"
  with pytest.raises(ValueError, match="suffix '.xyz'"):
    image_io.image_format(str(tmp_path / "x.xyz"))
  with pytest.raises(ValueError, match="suffix ''"):
    image_io.write_image(str(tmp_path / "noext"), smooth_image(4, 4))
