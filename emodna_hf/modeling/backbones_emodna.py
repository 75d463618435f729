"""The front-end registry: `backbone_type` → its `FrontEnd` declaration (`frontend_emodna.py`).

A new front end is one file in this folder (its `nn.Module` and a `FrontEnd`) plus one line here. The configuration
validates `backbone_type` against this registry, the model builds `BACKBONES[backbone_type].build(config)`, and the
rest of emodna_hf (feature extractor, caching, export, card, recipes) reads the declaration. Shipped as remote code:
transformers copies the files imported here next to every checkpoint.
"""

from __future__ import annotations

from .frontend_emodna import FrontEnd
from .opensmile_emodna import OPENSMILE
from .ssl_emodna import SSL_FRONT_ENDS
from .tcn_emodna import TCN

BACKBONES: dict[str, FrontEnd] = {front_end.name: front_end for front_end in (TCN, OPENSMILE, *SSL_FRONT_ENDS)}


def front_end(backbone_type: str) -> FrontEnd:
    """The declaration of `backbone_type`, or an error listing the registered front ends."""
    try:
        return BACKBONES[backbone_type]
    except KeyError:
        raise ValueError(
            f"Unknown backbone_type {backbone_type!r}; expected one of {', '.join(map(repr, BACKBONES))}."
        ) from None
