"""The built-in plugins: they register through the same hooks as any third-party plugin."""

from .datasets import disc_dataset
from .layers import Linear, ReLU, Sigmoid, Standardize, Tanh
from .losses import MSE
from .optimizers import SGD, Adam

__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "Standardize", "MSE", "SGD", "Adam", "disc_dataset"]
