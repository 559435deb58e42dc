"""Runners: thin absl-flags programs over the balle library."""

import os

# This checkout's balle/pretrained (not the installed package): where
# experiments.ship_model and `experiments.campaign ship` add models.
SOURCE_PRETRAINED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "balle",
    "pretrained")
