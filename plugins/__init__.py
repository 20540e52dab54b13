"""minidl's built-in plugins: they register through the same hooks, and load through the
same entry points, as any third-party plugin."""

from .callbacks import ClipGradNorm, CSVLogger, EarlyStopping, TensorBoard
from .datasets import disc_dataset
from .layers import Linear, ReLU, Sigmoid, Standardize, Tanh
from .losses import MSE, CrossEntropy
from .optimizers import SGD, Adam

__all__ = [
    "CSVLogger",
    "ClipGradNorm",
    "EarlyStopping",
    "TensorBoard",
    "Adam",
    "CrossEntropy",
    "Linear",
    "MSE",
    "ReLU",
    "SGD",
    "Sigmoid",
    "Standardize",
    "Tanh",
    "disc_dataset",
]
