"""The `balle` command: compress, decompress and inspect .balle files.

    balle compress INPUT [OUTPUT] [--model=NAME_OR_DIR] [--overwrite]
                   [--drop_alpha] [--verbose]
    balle decompress INPUT [OUTPUT] [--model=NAME_OR_DIR] [--overwrite]
    balle info FILE
    balle models

Errors are printed as one line on stderr with exit status 1.
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
  compress.add_argument("--model", help="shipped model name or model folder "
                        "(default: the shipped default model)")
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

  commands.add_parser("models", help="list the shipped models")
  return parser


def _default_output(path, suffix):
  return os.path.splitext(path)[0] + suffix


def _check_paths(input_path, output_path, overwrite):
  if os.path.abspath(input_path) == os.path.abspath(output_path):
    raise ValueError(f"output {output_path} is the input file")
  if os.path.exists(output_path) and not overwrite:
    raise FileExistsError(f"{output_path} exists; pass --overwrite to "
                          "replace it, or name another OUTPUT")


def _compress(args):
  from balle import codec, image_io, metrics, pretrained, safe_write
  output = args.output or _default_output(args.input, SUFFIX)
  _check_paths(args.input, output, args.overwrite)
  image = image_io.read_image(args.input, drop_alpha=args.drop_alpha)
  model = pretrained.resolve(args.model)
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
    decoded = codec.decompress_image(data, model)
    decode_time_s = time.perf_counter() - start
    print(f"model {model.config.name} (lambda {model.config.lmbda}), "
          f"{width}x{height}x{image.shape[2]}, encode {encode_time_s:.3f} s, "
          f"decode {decode_time_s:.3f} s")
    ms_ssim = (metrics.ms_ssim_note(height, width) or
               f"MS-SSIM {metrics.ms_ssim(image, decoded):.5f}")
    print(f"PSNR {metrics.psnr_rgb(image, decoded):.3f} dB, {ms_ssim}")


def _decompress(args):
  from balle import codec, file_format, image_io, pretrained
  output = args.output or _default_output(args.input, ".png")
  _check_paths(args.input, output, args.overwrite)
  with open(args.input, "rb") as f:
    data = f.read()
  header, _ = file_format.unpack(data)
  model_name = args.model or pretrained.find_by_id(header.model_id)
  if model_name is None:
    raise file_format.FormatError(
        f"file was made by model {header.model_id.hex()}, which is not a "
        "shipped model; pass --model=DIR")
  image = codec.decompress_image(data, pretrained.resolve(model_name))
  image_io.write_image(output, image, overwrite=args.overwrite)
  print(f"{output}: {image.shape[1]}x{image.shape[0]}x{image.shape[2]}")


def _info(args):
  from balle import file_format, metrics, pretrained
  with open(args.input, "rb") as f:
    data = f.read()
  header, payload = file_format.unpack(data)
  model_name = pretrained.find_by_id(header.model_id) or "not a shipped model"
  bpp = metrics.bits_per_pixel(len(data), header.height, header.width)
  print(f"file:       {args.input} ({len(data)} bytes, {bpp:.4f} bpp)")
  print(f"format:     version {file_format.VERSION}, "
        f"{file_format.OVERHEAD_SIZE} bytes header and checksum")
  print(f"image:      {header.width}x{header.height}, "
        f"{'gray' if header.channels == 1 else 'RGB'}")
  print(f"latents:    {header.latent_width}x{header.latent_height}x"
        f"{header.latent_channels}, {len(payload)} bytes")
  print(f"model:      {header.model_id.hex()} ({model_name})")


def _models(_):
  from balle import pretrained
  for name in pretrained.list_models():
    marker = " (default)" if name == pretrained.DEFAULT_MODEL else ""
    print(f"{name}{marker}")


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
