import numpy as np
import pytest
from PIL import Image

from balle import image_io
from balle.image_io import ImageConversionWarning
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
