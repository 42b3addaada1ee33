"""The architectures, one file per family; importing this package registers them all."""
from .base import Card, ZooModel
from .registry import create_model, get_card, list_models, register_model

# Import order is the lecture's order, which is also the order of `cnnzoo list` families in the tour.
from . import alexnet, vgg, googlenet, resnet  # noqa: E402,F401  (registers the lecture's core models)
from . import preact_resnet  # noqa: E402,F401
from . import densenet, mobilenet  # noqa: E402,F401
from . import shufflenet  # noqa: E402,F401
