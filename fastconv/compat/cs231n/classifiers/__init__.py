"""The course's ``cs231n.classifiers``: ``cnn.ThreeLayerConvNet``, ``fc_net.FullyConnectedNet`` and ``fc_net.TwoLayerNet``."""
from . import cnn, fc_net  # noqa: F401
from .cnn import ThreeLayerConvNet  # noqa: F401
from .fc_net import FullyConnectedNet, TwoLayerNet  # noqa: F401
