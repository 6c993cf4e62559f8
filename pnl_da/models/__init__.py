from pnl_da.models.factory import (
    LOCAL_BACKBONES,
    create_backbone,
    create_classifier,
)
from pnl_da.models.grl import WarmStartGRL, reverse_gradient, warm_start_coeff
from pnl_da.models.heads import Classifier, DomainDiscriminator

__all__ = [
    "LOCAL_BACKBONES", "Classifier", "DomainDiscriminator", "WarmStartGRL",
    "create_backbone", "create_classifier", "reverse_gradient", "warm_start_coeff",
]
