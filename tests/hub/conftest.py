# The `fake_hub` fixture (a loopback Hub active for one test) lives in the package so method tests can reuse it.
from hf_clipzoo.testing import fake_hub  # noqa: F401
