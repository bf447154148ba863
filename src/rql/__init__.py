"""Reversal Q-Learning (RQL) for flow policies, trained from offline data."""

__version__ = "0.1.0"
