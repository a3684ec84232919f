"""The PyTorch MatMul-free model family, re-exported for users (``from mmfc.models import ...``)."""

from mmfc.frontends.torch import *  # noqa: F401,F403
from mmfc.frontends.torch import __all__  # noqa: F401
