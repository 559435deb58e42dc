import zlib

import pytest
import tensorflow as tf

from balle import file_format
from balle.file_format import FormatError, Header

HEADER = Header(channels=3, model_id=bytes(range(8)), height=33, width=70,
                latent_height=3, latent_width=5, latent_channels=192)
PAYLOAD = b"\x01\x02range-coded\xff" * 3


def test_round_trip_and_overhead():
  data = file_format.pack(HEADER, PAYLOAD)
  assert len(data) == len(PAYLOAD) + file_format.OVERHEAD_SIZE == \
      len(PAYLOAD) + 32
  assert file_format.unpack(data) == (HEADER, PAYLOAD)


def test_layout_is_as_documented():
  data = file_format.pack(HEADER, PAYLOAD)
  assert data[:4] == b"BLLE" and data[4] == 1 and data[5] == 3
  assert data[6:14] == HEADER.model_id
  assert int.from_bytes(data[14:16], "big") == 33
  assert int.from_bytes(data[16:18], "big") == 70
  assert int.from_bytes(data[24:28], "big") == len(PAYLOAD)
  assert int.from_bytes(data[-4:], "big") == zlib.adler32(data[:-4])


@pytest.mark.parametrize("mangle,message", [
    (lambda d: d[:10], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\x00", "trailing"),
    (lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], "not a .balle file"),
    (lambda d: b"", "not a .balle file"),
    (lambda d: d[:4] + b"\x07" + d[5:], "version"),
    (lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "checksum"),
    (lambda d: d[:15] + bytes([d[15] ^ 1]) + d[16:], "checksum"),
])
def test_damaged_files_are_rejected(mangle, message):
  data = file_format.pack(HEADER, PAYLOAD)
  with pytest.raises(FormatError, match=message):
    file_format.unpack(mangle(data))


def test_every_single_byte_change_is_rejected():
  data = file_format.pack(HEADER, PAYLOAD)
  for i in range(len(data)):
    for flip in (0x01, 0x80, 0xFF):
      damaged = data[:i] + bytes([data[i] ^ flip]) + data[i + 1:]
      with pytest.raises(FormatError):
        file_format.unpack(damaged)


def test_inconsistent_latent_shape_is_rejected():
  bad = Header(**{**HEADER.__dict__, "latent_height": 4})
  with pytest.raises(FormatError, match="latent shape"):
    file_format.unpack(file_format.pack(bad, PAYLOAD))


def test_image_size_limits():
  big = Header(**{**HEADER.__dict__, "height": 70000})
  with pytest.raises(FormatError, match="outside"):
    file_format.pack(big, PAYLOAD)


def test_tensorflow_twin_writes_the_same_bytes():
  for header, payload in [(HEADER, PAYLOAD),
                          (Header(1, b"\xff" * 8, 1, 1, 1, 1, 8), b""),
                          (Header(3, b"abcdefgh", 4000, 65535, 250, 4096, 128),
                           bytes(range(256)) * 40)]:
    expected = file_format.pack(header, payload)
    actual = file_format.pack_tf(
        tf.constant(header.channels), header.model_id,
        tf.constant([header.height, header.width]),
        tf.constant([header.latent_height, header.latent_width]),
        header.latent_channels, tf.constant(payload))
    assert actual.numpy() == expected
    channels, image_shape, latent_shape, unpacked = file_format.unpack_tf(
        tf.constant(expected), header.model_id, header.latent_channels)
    assert int(channels) == header.channels
    assert list(image_shape.numpy()) == [header.height, header.width]
    assert list(latent_shape.numpy()) == [header.latent_height,
                                          header.latent_width]
    assert unpacked.numpy() == payload


def test_adler32_closed_form_matches_zlib():
  for data in [b"", b"a", bytes(range(256)) * 300, b"\xff" * 100000]:
    assert int(file_format.adler32_tf(tf.constant(data))) == zlib.adler32(data)


@pytest.mark.parametrize("mangle,message", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "checksum"),
    (lambda d: b"JUNK" + d[4:], "magic"),
])
def test_tensorflow_twin_rejects_damage(mangle, message):
  data = file_format.pack(HEADER, PAYLOAD)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    file_format.unpack_tf(tf.constant(mangle(data)), HEADER.model_id, 192)


def test_tensorflow_twin_rejects_other_model():
  data = file_format.pack(HEADER, PAYLOAD)
  with pytest.raises(tf.errors.InvalidArgumentError, match="different model"):
    file_format.unpack_tf(tf.constant(data), b"\x00" * 8, 192)
