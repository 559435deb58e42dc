"""The `balle` command: compress, decompress and inspect .balle files.

    balle compress INPUT [OUTPUT] [--model=NAME_OR_DIR | --quality=1..8
                   [--family=bls2017|bmshj2018]] [--overwrite]
                   [--drop_alpha] [--verbose] [--max_pixels=N]
    balle decompress INPUT [OUTPUT] [--model=NAME_OR_DIR] [--overwrite]
                     [--max_pixels=N]
    balle info FILE [--max_pixels=N]
    balle models

Output paths are checked before any work. Errors are printed as one line on
stderr with exit status 1.
"""

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ start-up noise

SUFFIX = ".balle"


def _parser():
  parser = argparse.ArgumentParser(
      prog="balle", description="Learned image compression (Ballé, Laparra & "
      "Simoncelli, ICLR 2017).")
  commands = parser.add_subparsers(dest="command", required=True)

  compress = commands.add_parser("compress", help="image -> .balle file")
  compress.add_argument("input", help="image file (PNG, JPEG, TIFF, WebP, ...)")
  compress.add_argument("output", nargs="?",
                        help=f"default: INPUT with suffix {SUFFIX}")
  choice = compress.add_mutually_exclusive_group()
  choice.add_argument("--model", help="shipped model name or model folder "
                      "(default: the shipped default model)")
  choice.add_argument("--quality", type=_positive_int,
                      help="1 (smallest files) .. 8 (best quality): the "
                      "shipped model of that rate (`balle models`)")
  compress.add_argument("--family", choices=("bls2017", "bmshj2018"),
                        help="with --quality: the model family, bls2017 "
                        "(factorized prior, Ballé 2017) or bmshj2018 (scale "
                        "hyperprior, Ballé 2018); default: bls2017")
  compress.add_argument("--drop_alpha", action="store_true",
                        help="code RGBA/LA images without their alpha channel")
  compress.add_argument("--verbose", action="store_true",
                        help="also decode and print bpp, PSNR and MS-SSIM")

  decompress = commands.add_parser("decompress", help=".balle file -> image")
  decompress.add_argument("input")
  decompress.add_argument("output", nargs="?",
                          help="image file; the suffix picks the format "
                          "(default: INPUT with suffix .png)")
  decompress.add_argument("--model", help="model name or folder (default: "
                          "the shipped model whose id is in the file)")

  for command in (compress, decompress):
    command.add_argument("--overwrite", action="store_true",
                         help="replace OUTPUT if it exists")

  info = commands.add_parser("info", help="print a .balle file's header")
  info.add_argument("input")

  for command in (compress, decompress, info):
    command.add_argument(
        "--max_pixels", type=_positive_int, default=_default_max_pixels(),
        help="refuse images with more pixels than this (default "
        "%(default)s); bounds the memory and time a file can demand")

  commands.add_parser("models", help="list the shipped models")
  return parser


def _positive_int(text):
  value = int(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
  return value


def _default_max_pixels():
  from balle.coding import file_format  # pylint: disable=import-outside-toplevel
  return file_format.DEFAULT_MAX_PIXELS


def _default_output(path, suffix):
  return os.path.splitext(path)[0] + suffix


def _check_paths(input_path, output_path, overwrite):
  """Fails fast, before the work, on outputs that could not be written."""
  from balle.io import safe_write  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(input_path):
    raise FileNotFoundError(f"{input_path}: no such file")
  if os.path.exists(output_path) and os.path.samefile(input_path,
                                                       output_path):
    raise ValueError(f"output {output_path} is the input file")
  if os.path.exists(output_path) and not overwrite:
    raise FileExistsError(f"{output_path} exists; pass --overwrite to "
                          "replace it, or name another OUTPUT")
  safe_write.check_writable(output_path, overwrite)


def _compress(args):
  from balle import pretrained
  from balle.coding import codec
  from balle.evaluation import metrics
  from balle.io import image_io
  from balle.io import safe_write
  output = args.output or _default_output(args.input, SUFFIX)
  _check_paths(args.input, output, args.overwrite)
  image = image_io.read_image(args.input, drop_alpha=args.drop_alpha,
                              max_pixels=args.max_pixels)
  if args.family and not args.quality:
    raise ValueError("--family picks the model of a --quality; name a "
                     "model with --model instead")
  model = pretrained.resolve(
      pretrained.model_for_quality(args.quality,
                                   args.family or pretrained.DEFAULT_FAMILY)
      if args.quality else args.model)
  start = time.perf_counter()
  data = codec.compress_image(model, image)
  encode_time_s = time.perf_counter() - start
  safe_write.write_file_atomic(output, lambda f: f.write(data),
                               overwrite=args.overwrite)
  height, width, _ = image.shape
  print(f"{output}: {len(data)} bytes, "
        f"{metrics.bits_per_pixel(len(data), height, width):.4f} bpp")
  if args.verbose:
    start = time.perf_counter()
    decoded = codec.decompress_image(data, model, max_pixels=None)
    decode_time_s = time.perf_counter() - start
    print(f"model {model.config.name} (lambda {model.config.lmbda}), "
          f"{width}x{height}x{image.shape[2]}, encode {encode_time_s:.3f} s, "
          f"decode {decode_time_s:.3f} s")
    ms_ssim = (metrics.ms_ssim_note(height, width) or
               f"MS-SSIM {metrics.ms_ssim(image, decoded):.5f}")
    print(f"PSNR {metrics.psnr_rgb(image, decoded):.3f} dB, {ms_ssim}")


def _decompress(args):
  from balle import pretrained
  from balle.coding import codec
  from balle.coding import file_format
  from balle.io import image_io
  output = args.output or _default_output(args.input, ".png")
  _check_paths(args.input, output, args.overwrite)
  image_io.image_format(output)
  data = _read_file(args.input)
  header, _ = file_format.unpack(data, max_pixels=args.max_pixels)
  model_name = args.model or pretrained.find_by_id(header.model_id)
  if model_name is None:
    raise file_format.FormatError(
        f"file was made by model {header.model_id.hex()}, which is not a "
        "shipped model; pass --model=DIR")
  image = codec.decompress_image(data, pretrained.resolve(model_name),
                                 max_pixels=args.max_pixels)
  image_io.write_image(output, image, overwrite=args.overwrite)
  print(f"{output}: {image.shape[1]}x{image.shape[0]}x{image.shape[2]}")


def _info(args):
  from balle import pretrained
  from balle.coding import file_format
  from balle.evaluation import metrics
  data = _read_file(args.input)
  header, sections = file_format.unpack(data, max_pixels=args.max_pixels)
  model_name = pretrained.find_by_id(header.model_id) or "not a shipped model"
  bpp = metrics.bits_per_pixel(len(data), header.height, header.width)
  section_bytes = sum(len(section.data) for section in sections)
  count = file_format.tile_count(header.height, header.width,
                                 header.tile_size)
  tiling = (f"{count} tile(s) of {header.tile_size}x"
            f"{header.tile_size}" if header.tile_size else "one tile")
  print(f"file:       {args.input} ({len(data)} bytes, {bpp:.4f} bpp)")
  print(f"format:     version {header.version}, "
        f"{len(data) - section_bytes} bytes header, table and checksum")
  print(f"image:      {header.width}x{header.height}, "
        f"{'gray' if header.channels == 1 else 'RGB'}, {tiling}")
  print(f"sections:   {len(sections)}, {section_bytes} bytes; first "
        f"{'x'.join(map(str, sections[0].shape))}")
  print(f"model:      {header.architecture} {header.model_id.hex()} "
        f"({model_name})")
  print(f"portable:   {_PORTABILITY[pretrained.indexes_of(header.model_id)]}")


# `balle info`'s portable line, by how the file's model chose its CDFs
# (pretrained.indexes_of; README, "Portability").
_PORTABILITY = {
    "exact": "yes: its CDFs are chosen in integers, so every machine decodes "
             "the same symbols (pixels may differ by one level: g_s runs in "
             "floating point)",
    "float": "at risk: written before its model's CDF choice was exact, so "
             "another machine may fail to decode it; re-encode it here to "
             "fix that (balle decompress, then balle compress)",
    None: "unknown (not a shipped model)",
}


def _read_file(path):
  """The bytes of a .balle file, refusing anything but a regular file (a
  FIFO or device could block or never end)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file")
  with open(path, "rb") as f:
    return f.read()


def _models(_):
  """One line per shipped model: quality, family, name, lambda, N, M and,
  where it was measured when shipped, its mean Kodak bpp / PSNR / MS-SSIM."""
  from balle import pretrained
  print(f"{'quality':>7}  {'family':<9} {'model':<20} {'lambda':>7} "
        f"{'N':>4} {'M':>4}  Kodak bpp / PSNR dB / MS-SSIM")
  for name in pretrained.list_models():
    info = pretrained.describe(name)
    kodak = info["measured"].get("kodak")
    figures = pretrained.format_figures(kodak) if kodak else "not measured"
    marker = "  (default)" if name == pretrained.DEFAULT_MODEL else ""
    print(f"{info['quality'] or '-':>7}  {info['architecture']:<9} "
          f"{name:<20} {info['lmbda']:>7g} {info['num_filters']:>4} "
          f"{info['latent_channels']:>4}  {figures}{marker}")


def main(argv=None):
  args = _parser().parse_args(argv)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  warnings.showwarning = (
      lambda message, *_, **__: print(f"balle: warning: {message}",
                                      file=sys.stderr))
  command = {"compress": _compress, "decompress": _decompress,
             "info": _info, "models": _models}[args.command]
  try:
    command(args)
  except (OSError, ValueError, KeyError, RuntimeError,
          tf.errors.OpError) as error:
    message = error.args[0] if isinstance(error, KeyError) else error
    if isinstance(error, tf.errors.OpError):
      message = error.message.splitlines()[0]
    if isinstance(error, OSError) and error.filename:
      message = f"{error.filename}: {error.strerror}"
    print(f"balle: error: {message}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
