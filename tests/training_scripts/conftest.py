# The loopback Hub fixture (`fake_hub`), for the scripts' --push_to_hub.
from hf_clipzoo.testing import fake_hub  # noqa: F401
