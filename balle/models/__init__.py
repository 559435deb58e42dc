"""The compression models: what every model is, what they are built of, and
one module per model family, named by its paper key.

compression_model  `CompressionModel` (the interface training, coding and
                   evaluation use), `ModelConfig`, the registry of
                   architectures (`register`, `model_class`), save and load
layers             GDN, SignalConv2D, ConvStack/Stage: the transforms' layers
entropy_models     frozen CDF tables, their coded ranges, the Gaussian scale
                   table (the entropy-model wiring the families share)
integer_network    exact integer networks for whatever chooses a CDF
losses             the objective R + lambda * D and its distortions
weight_storage     weights stored compactly and exactly (float16, int8)
bls2017            Ballé, Laparra & Simoncelli (ICLR 2017): factorized prior
widen              bls2017's function-preserving warm starts
bmshj2018          Ballé, Minnen, Singh, Hwang & Johnston (ICLR 2018): scale
                   hyperprior (bmshj2018_tiles: its sections' geometry, tiles)

A family is one module that defines its transforms, its model (decorated
with `register`, which names it by `ARCHITECTURE`, the name written in file
headers) and its tile coder (a module of its own where the family's would
pass 450 lines); it is imported below, so that every model of it
loads. A new family is a new module here and one import line.
"""

from balle.models.compression_model import CONFIG_FILE
from balle.models.compression_model import EXACT_FILE
from balle.models.compression_model import CompressionModel
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import WEIGHTS_FILE
from balle.models.compression_model import load_model
from balle.models.compression_model import model_class
from balle.models.compression_model import register
# The families, registered as they are imported.
from balle.models.bls2017 import FactorizedPriorModel
from balle.models.bmshj2018 import ScaleHyperpriorModel

__all__ = [
    "CONFIG_FILE", "EXACT_FILE", "CompressionModel", "ModelConfig", "WEIGHTS_FILE",
    "load_model", "model_class", "register", "FactorizedPriorModel",
    "ScaleHyperpriorModel",
]
