"""cnnzoo: the classic CNN architectures, their analysis, and the lecture's workflow."""
from .errors import CnnzooError, UnknownModelError
from .models import Card, ZooModel, create_model, get_card, list_models
from .analysis import profile

__all__ = ["Card", "CnnzooError", "UnknownModelError", "ZooModel", "create_model", "get_card", "list_models", "profile"]
__version__ = "0.1.0"
