"""The PyTorch MatMul-free model family, re-exported for users (``from mmfc.models import ...``).

Importing this module imports torch (the model classes load on first access in
``mmfc.frontends.torch``; a star import touches them all).
"""

from mmfc.frontends.torch import *  # noqa: F401,F403
from mmfc.frontends.torch import __all__  # noqa: F401
