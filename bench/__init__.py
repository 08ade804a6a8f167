"""KAN vs MLP in offline RL: a CQL benchmark suite on the D4RL MuJoCo datasets."""

__version__ = "0.1.0"
