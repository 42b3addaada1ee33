"""cnnzoo: the classic CNN architectures, their analysis, and the lecture's workflow."""
from .errors import CnnzooError, UnknownModelError
from .models import Card, ZooModel, create_model, get_card, list_models

__all__ = ["Card", "CnnzooError", "UnknownModelError", "ZooModel", "create_model", "get_card", "list_models"]
__version__ = "0.1.0"
