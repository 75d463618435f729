"""emodna_hf: cross-corpus speech emotion recognition with Emo-DNA-style domain adaptation for 🤗 transformers."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

from .feature_extraction import create_feature_extractor
from .modeling import EmoDnaConfig, EmoDnaForAudioClassification, EmoDnaOutput, EmoDnaPreTrainedModel
from .modeling.feature_extraction_emodna import EmoDnaFeatureExtractor

__version__ = "0.1.0"

# In-process registration: with emodna_hf imported, Auto classes resolve "emodna" without trust_remote_code.
AutoConfig.register(EmoDnaConfig.model_type, EmoDnaConfig, exist_ok=True)
AutoModel.register(EmoDnaConfig, EmoDnaForAudioClassification, exist_ok=True)
AutoModelForAudioClassification.register(EmoDnaConfig, EmoDnaForAudioClassification, exist_ok=True)
AutoFeatureExtractor.register(EmoDnaConfig, EmoDnaFeatureExtractor, exist_ok=True)

__all__ = [
    "EmoDnaConfig",
    "EmoDnaFeatureExtractor",
    "EmoDnaForAudioClassification",
    "EmoDnaOutput",
    "EmoDnaPreTrainedModel",
    "create_feature_extractor",
]
