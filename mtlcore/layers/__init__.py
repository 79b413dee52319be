"""tf.Module building blocks: each creates its variables in its constructor."""

from mtlcore.layers.conv import Conv1D
from mtlcore.layers.dropout import Dropout, dropout
from mtlcore.layers.embed import Embed
from mtlcore.layers.linear import Linear
from mtlcore.layers.recurrent import BiLSTM
