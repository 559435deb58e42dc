"""balle: end-to-end optimized image compression (Ballé et al.) in
TensorFlow 2, with a file format, shipped models and a training campaign.

Subpackages, in dependency order: each imports only from those before it
(tests/test_layout.py checks it, and that no module of balle/ imports one of
a later subpackage):

    io          reading and writing images; atomic file and folder writes
    coding      the .balle file format, bounded range decoding, the pixels a
                model codes, tiled coding, the codec and the SavedModel
    models      the CompressionModel base and its registry, the shared
                layers, the losses, weight storage, and one module per model
                family named by its paper key (bls2017, bmshj2018)
    pretrained  the shipped trained models, by name and quality
    data        image file lists, training patches in memory or streamed
    evaluation  metrics, rate-distortion measurement, classic codecs, RD
                curves and BD-rate, published reference curves, pictures
    training    settings, the trainer's state and step, the loop,
                validation, schedules, multi-device distribution
    campaign    the long training run in legs, its records, the rate ladder
                and the diagnosis
    cli         the `balle` command (balle/cli.py)

    io <- coding <- models <- pretrained <- data <- evaluation <- training
       <- campaign <- cli
"""
