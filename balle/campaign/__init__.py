"""The research campaign: one anchor model trained over many sessions, the
rate ladder made from it, and the diagnosis of what moves its curve.

legs       `Campaign`: the committed state of a campaign and its legs
records    what a campaign records of a model (test-set figures, gaps to
           the references, training pixels, portable flags)
ladder     the rate ladder: one compact model per quality 1..8
diagnosis  fine-tunes of the anchor compared on a fixed yardstick
"""

from balle.campaign.legs import Campaign
from balle.campaign.legs import LegRecord
from balle.campaign.legs import create
from balle.campaign.legs import final_training_loss

__all__ = ["Campaign", "LegRecord", "create", "final_training_loss"]
