import struct
import zlib

import pytest
import tensorflow as tf

from balle.coding import file_format
from balle.coding.file_format import FormatError, Header, Section
from conftest import recheck

HEADER = Header(channels=3, model_id=bytes(range(8)), height=33, width=70,
                tile_size=1024)
PAYLOAD = b"\x01\x02range-coded\xff" * 3
SECTIONS = [Section((3, 5, 192), PAYLOAD)]


def test_round_trip_and_overhead():
  data = file_format.pack(HEADER, SECTIONS)
  assert len(data) == len(PAYLOAD) + file_format.OVERHEAD_SIZE == \
      len(PAYLOAD) + 57
  assert file_format.unpack(data) == (HEADER, SECTIONS)
  several = [Section((2, 3), b"a"), Section((1,), b""),
             Section((1, 2, 3, 4), b"xyz" * 100)]
  assert file_format.unpack(file_format.pack(HEADER, several))[1] == several


def test_layout_is_as_documented():
  data = file_format.pack(HEADER, SECTIONS)
  assert data[:4] == b"BLLE" and data[4] == 2 and data[5] == 3
  assert data[6:14] == HEADER.model_id
  assert data[14:30] == b"bls2017" + bytes(9)
  assert struct.unpack(">HHHI", data[30:40]) == (33, 70, 1024, 1)
  assert struct.unpack(">B4HI", data[40:53]) == (3, 3, 5, 192, 0,
                                                 len(PAYLOAD))
  assert data[53:-4] == PAYLOAD
  assert int.from_bytes(data[-4:], "big") == zlib.adler32(data[:-4])


def test_tiles_cover_the_image_in_raster_order():
  assert file_format.tiles(5, 7, 0) == [(0, 0, 5, 7)]
  assert file_format.tiles(40, 20, 16) == [
      (0, 0, 16, 16), (0, 16, 16, 20), (16, 0, 32, 16), (16, 16, 32, 20),
      (32, 0, 40, 16), (32, 16, 40, 20)]


@pytest.mark.parametrize("mangle,message", [
    (lambda d: d[:10], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\x00", "trailing"),
    (lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], "not a .balle file"),
    (lambda d: b"", "not a .balle file"),
    (lambda d: d[:4] + b"\x07" + d[5:], "version"),
    (lambda d: d[:60] + bytes([d[60] ^ 0x10]) + d[61:], "checksum"),
    (lambda d: d[:31] + bytes([d[31] ^ 1]) + d[32:], "checksum"),
])
def test_damaged_files_are_rejected(mangle, message):
  data = file_format.pack(HEADER, SECTIONS)
  with pytest.raises(FormatError, match=message):
    file_format.unpack(mangle(data))


def test_every_single_byte_change_is_rejected():
  data = file_format.pack(HEADER, SECTIONS)
  for i in range(len(data)):
    for flip in (0x01, 0x80, 0xFF):
      damaged = data[:i] + bytes([data[i] ^ flip]) + data[i + 1:]
      with pytest.raises(FormatError):
        file_format.unpack(damaged)


@pytest.mark.parametrize("offset,value,message", [
    (5, b"\x02", "channel count"),
    (14, b"\x01", "architecture"),
    (30, b"\x00\x00", "outside"),
    (34, b"\x00\x00", "tile size 0"),
    (36, b"\x00\x00\x00\x00", "0 sections"),
    (36, b"\x7f\xff\xff\xff", "sections announced"),
    (40, b"\x05", "invalid shape"),
    (41, b"\x00\x00", "invalid shape"),
    (47, b"\x00\x01", "invalid shape"),  # a dimension beyond the rank
    (49, b"\x7f\xff\xff\xff", "truncated"),
])
def test_forged_fields_are_rejected_despite_a_valid_checksum(offset, value,
                                                             message):
  data = bytearray(file_format.pack(HEADER, SECTIONS))
  data[offset:offset + len(value)] = value
  with pytest.raises(FormatError, match=message):
    file_format.unpack(recheck(bytes(data)))


def test_pixel_limit_is_checked_before_the_body():
  huge = Header(3, bytes(8), 65535, 65535, 1024)
  data = file_format.pack(huge, SECTIONS)[:60]  # truncated, too
  with pytest.raises(FormatError, match="above the limit"):
    file_format.unpack(data)
  small = file_format.pack(HEADER, SECTIONS)
  with pytest.raises(FormatError, match="2310 pixels is above the limit of "
                     "2000 pixels"):
    file_format.unpack(small, max_pixels=2000)
  assert file_format.unpack(small, max_pixels=None)[0] == HEADER


def _pack_v1(height, width, latent_shape, payload):
  body = struct.pack(">4sBB8sHHHHHI", b"BLLE", 1, 3, bytes(8), height, width,
                     *latent_shape, len(payload)) + payload
  return body + struct.pack(">I", zlib.adler32(body))


def test_version_1_reads_as_one_section():
  header, sections = file_format.unpack(_pack_v1(33, 70, (3, 5, 192),
                                                 PAYLOAD))
  assert header == Header(3, bytes(8), 33, 70, tile_size=0, version=1)
  assert sections == SECTIONS
  with pytest.raises(FormatError, match="latent shape"):
    file_format.unpack(_pack_v1(33, 70, (4, 5, 192), PAYLOAD))
  with pytest.raises(FormatError, match="above the limit"):
    file_format.unpack(_pack_v1(65535, 65535, (4096, 4096, 8), b""))


def test_pack_refuses_what_the_format_cannot_hold():
  with pytest.raises(FormatError, match="outside"):
    file_format.pack(Header(3, bytes(8), 70000, 1, 1024), SECTIONS)
  with pytest.raises(FormatError, match="shape"):
    file_format.pack(HEADER, [Section((70000,), b"")])
  with pytest.raises(FormatError, match="sections"):
    file_format.pack(HEADER, [])


# A one-tile file of two sections, as the scale hyperprior writes it (N = 8,
# M = 12), and the shapes its model gives an H x W tile.
TWO_SECTIONS = [Section((1, 2, 8), b"z" * 7), Section((3, 5, 12), PAYLOAD)]


def _two_section_shapes(height, width):
  return [(-(-height // 64), -(-width // 64), 8),
          (-(-height // 16), -(-width // 16), 12)]


def _pack_tf(header, sections):
  return file_format.pack_tf(
      tf.constant(header.channels), header.model_id, header.architecture,
      tf.constant([header.height, header.width]), header.tile_size,
      [(tf.constant(s.data), tf.constant(s.shape)) for s in sections]).numpy()


def _unpack_tf(data, model_id=HEADER.model_id, architecture="bls2017",
               section_shapes=_two_section_shapes):
  """`unpack_tf` traced into a graph, as the SavedModel runs it."""
  return tf.function(lambda data: file_format.unpack_tf(
      data, model_id, architecture, 1024, section_shapes))(tf.constant(data))


def test_tensorflow_twin_writes_the_same_bytes():
  for header, sections in [
      (HEADER, SECTIONS),
      (HEADER, TWO_SECTIONS),
      (Header(1, b"\xff" * 8, 1, 1, 1024), [Section((1, 1, 8), b"")]),
      (Header(3, b"abcdefgh", 1000, 1024, 1024, "bmshj2018"),
       [Section((63, 64, 128), bytes(range(256)) * 40),
        Section((7,), b"rank 1"), Section((1, 2, 3, 4), b"rank 4")])]:
    expected = file_format.pack(header, sections)
    assert _pack_tf(header, sections) == expected
    channels, image_shape, unpacked = _unpack_tf(
        expected, header.model_id, header.architecture,
        lambda height, width, sections=sections: [s.shape for s in sections])
    assert int(channels) == header.channels
    assert list(image_shape.numpy()) == [header.height, header.width]
    assert [Section(tuple(shape.numpy()), data.numpy())
            for data, shape in unpacked] == sections


def test_adler32_closed_form_matches_zlib():
  for data in [b"", b"a", bytes(range(256)) * 300, b"\xff" * 100000]:
    assert int(file_format.adler32_tf(tf.constant(data))) == zlib.adler32(data)


def _forge(offset, value):
  """Bytes at `offset` replaced by `value`, the checksum recomputed."""
  return lambda d: recheck(d[:offset] + value + d[offset + len(value):])


@pytest.mark.parametrize("mangle,message", [
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\x00", "trailing bytes"),
    (lambda d: d[:70] + bytes([d[70] ^ 0x10]) + d[71:], "checksum"),
    (lambda d: b"JUNK" + d[4:], "magic"),
    (_forge(4, b"\x01"), "version"),
    (_forge(36, b"\x7f\xff\xff\xff"), "section table does not fit"),
    (_forge(36, b"\x00\x00\x00\x00"), "section table does not fit"),
    (_forge(40 + 13 + 9, b"\x7f\xff\xff\xff"), "announces more bytes"),
    (_forge(14, b"x"), "architecture"),
    (_forge(5, b"\x02"), "channel count"),
    (_forge(34, b"\x02\x00"), "tile size"),
    (_forge(30, b"\x00\x00"), "image size 0"),
    (_forge(30, b"\x08\x00"), "single-tile"),
    (_forge(30, b"\x00\xc8"), "section 0 shape"),  # 200 rows: 4 z rows
    (_forge(40 + 13, b"\x02"), "section 1 shape"),  # rank 2
    (_forge(40 + 13 + 7, b"\x00\x01"), "section 1 shape"),  # a 4th dim
])
def test_tensorflow_twin_rejects_damage(mangle, message):
  data = file_format.pack(HEADER, TWO_SECTIONS)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _unpack_tf(mangle(data))


def test_tensorflow_twin_rejects_other_model_and_section_counts():
  data = file_format.pack(HEADER, TWO_SECTIONS)
  with pytest.raises(tf.errors.InvalidArgumentError, match="different model"):
    _unpack_tf(data, model_id=b"\x00" * 8)
  for sections in (TWO_SECTIONS[:1], TWO_SECTIONS * 2):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="section count is not the 2 of one bls2017 "
                       "tile .*single-tile"):
      _unpack_tf(file_format.pack(HEADER, sections))
