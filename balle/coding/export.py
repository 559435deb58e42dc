"""Export a frozen model as a SavedModel that needs only TensorFlow and tfc.

The SavedModel has two functions (also its serving signatures):

    compress(image: uint8 [H, W, C]) -> string: the complete .balle file
    decompress(data: string) -> uint8 [H, W, C]

It codes images that fit one tile (sides up to `codec.TILE_SIZE`, 1024 pixels),
which the library codes whole with the model's own `compress` and `decompress`:
for those, the file bytes and the decoded pixels are identical to
`balle.coding.codec`'s (the header, section table and checksum are written with
`file_format.pack_tf`, the TensorFlow-op twin of `file_format.pack`), for every
architecture (bls2017's one section per tile, bmshj2018's two). Larger images,
version-1 files and files of several tiles are refused. `decompress` checks
magic, version, length, checksum, architecture, model id, channels, tile size
and the section table against the model's `section_shapes`
(`file_format.unpack_tf`), then that every section is what the range coder
writes for the values it decodes to (the model's `section_checks`, bounded in
time like the library's decoder), raising InvalidArgumentError with a message
that names the problem.
"""

import tensorflow as tf

from balle.coding import codec as balle_codec
from balle.coding import file_format
from balle.io.safe_write import staged_directory


class _SavedCodec(tf.Module):
  """The model's coding functions, wrapped with the file format."""

  def __init__(self, model):
    super().__init__(name="balle_codec")
    # Track only the variables: tracking the Keras model itself would make
    # Keras serialize its layers and `call`, which this SavedModel doesn't need.
    object.__setattr__(self, "model", model)
    self.variables_to_save = list(model.variables)
    self.model_name = tf.constant(model.config.name)
    self.lmbda = tf.constant(model.config.lmbda, tf.float32)
    self.model_id = tf.constant(model.model_id)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, None], tf.uint8, name="image")])
  def compress(self, image):
    config = self.model.config
    shape = tf.shape(image)
    checks = [
        tf.debugging.assert_less_equal(
            tf.reduce_max(shape[:2]), balle_codec.TILE_SIZE,
            message=f"image is larger than {balle_codec.TILE_SIZE} pixels on "
            "a side: the SavedModel codes single-tile images, the balle "
            "library any size"),
        tf.debugging.assert_greater(tf.reduce_min(shape[:2]), 0,
                                    message="image is empty"),
        tf.debugging.Assert(
            tf.logical_or(tf.equal(shape[2], 1),
                          tf.equal(shape[2], config.channels)),
            ["image channel count does not match the model:", shape[2]]),
    ]
    with tf.control_dependencies(checks):
      sections = self.model.compress(image)
    return file_format.pack_tf(
        shape[2], self.model.model_id, self.model.ARCHITECTURE, shape[:2],
        balle_codec.TILE_SIZE, sections)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="data")])
  def decompress(self, data):
    model = self.model
    channels, image_shape, sections = file_format.unpack_tf(
        data, model.model_id, model.ARCHITECTURE, balle_codec.TILE_SIZE,
        model.section_shapes)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(channels, 1),
                      tf.equal(channels, model.config.channels)),
        ["file has another channel count than the model:", channels])
    # As the library: each section decoded with the padding that bounds the
    # range decoder's time, and refused unless it is what the range coder
    # writes for the values it decodes to (only then the model decodes it
    # again).
    for index, exact in enumerate(model.section_checks(sections)):
      with tf.control_dependencies([check]):
        check = tf.debugging.Assert(
            exact, [f"file is corrupted: section {index} is not a range "
                    "coding of the values it decodes to"])
    with tf.control_dependencies([check]):
      return model.decompress(sections, image_shape, channels)


def export_saved_model(model, directory, overwrite=False):
  """Writes `model` (frozen for coding) as a SavedModel into `directory`.

  The SavedModel is written beside `directory` and renamed into place, so a
  failed export leaves nothing half-written; an existing `directory` is only
  replaced with overwrite=True.
  """
  model._require_frozen()  # pylint: disable=protected-access
  with staged_directory(directory, overwrite) as staging:
    module = _SavedCodec(model)
    tf.saved_model.save(
        module, staging,
        signatures={"compress": module.compress,
                    "decompress": module.decompress})
