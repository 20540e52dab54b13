"""minidl's built-in plugins: they register through the same hooks, and load through the
same entry points, as any third-party plugin."""

from .activations import GELU
from .callbacks import ClipGradNorm, CSVLogger, EarlyStopping, TensorBoard
from .containers import Residual
from .datasets import disc_dataset
from .dropout import Dropout
from .embedding import Embedding
from .layers import Linear, ReLU, Sigmoid, Standardize, Tanh
from .losses import MSE, CrossEntropy
from .norm import LayerNorm
from .optimizers import SGD, Adam, AdamW

__all__ = [
    "CSVLogger",
    "ClipGradNorm",
    "EarlyStopping",
    "TensorBoard",
    "Adam",
    "AdamW",
    "CrossEntropy",
    "Dropout",
    "Embedding",
    "GELU",
    "LayerNorm",
    "Linear",
    "MSE",
    "ReLU",
    "Residual",
    "SGD",
    "Sigmoid",
    "Standardize",
    "Tanh",
    "disc_dataset",
]
