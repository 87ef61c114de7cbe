"""CLIP towers' shared pieces: the offline OpenAI BPE tokenizer, ready-made processors and what converters share.

`convert` (the checkpoint reader and command line every `models/<method>/convert_<method>.py` uses) and `processing`
are imported from their modules (`hf_clipzoo.backbones.convert`, `...processing`); only the
tokenizer, which needs nothing but transformers (and ftfy), is re-exported here so importing this package stays cheap.
"""

from .tokenizer import ZooCLIPTokenizer, load_clip_tokenizer

__all__ = ["ZooCLIPTokenizer", "load_clip_tokenizer"]
