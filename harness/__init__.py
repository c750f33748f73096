"""harness: prompt or fine-tune? Benchmark text-classification strategies on one frozen held-out set."""
import os as _os

# Set before anything imports litellm or huggingface_hub: litellm otherwise downloads its price map at import
# time, and the hub libraries otherwise try the network. Only package registries are reachable, so every model
# and price must be found locally; users who want the live map can set the variable themselves.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
