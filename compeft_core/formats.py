"""Names and bounds that the light client shares with the compressor: plain constants.

This module imports neither torch nor numpy, so the client (which only downloads and decodes) can
use the PEFT folder's file names and the float32 bound without installing the compressor's stack.
"""

from __future__ import annotations

import struct
from typing import Literal

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"
PICKLE_REFUSED = (
    "pickle files (adapter_model.bin) are refused: unpickling runs arbitrary code. "
    "Save the adapter with save_pretrained(..., safe_serialization=True) to get "
    "adapter_model.safetensors"
)
# The largest finite float32 (bits 0x7f7fffff): ComPEFT computes and stores in float32.
FLOAT32_MAX: float = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
# The blob's delta codecs (compeft_core.codecs defines them) and the most magnitude bits a kept
# entry may carry (compeft_core.levels).
CodecName = Literal["compeft", "bitdelta", "dare", "deltadq"]
DEFAULT_CODEC: CodecName = "compeft"
MAX_VALUE_BITS = 8
