"""The Hub-shippable model code: one flat folder, copied next to every saved checkpoint as remote code."""

from .configuration_emodna import EmoDnaConfig
from .modeling_emodna import EmoDnaForAudioClassification, EmoDnaOutput, EmoDnaPreTrainedModel

__all__ = ["EmoDnaConfig", "EmoDnaForAudioClassification", "EmoDnaOutput", "EmoDnaPreTrainedModel"]
