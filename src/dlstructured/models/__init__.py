"""Keras layers, blocks and builders: the networks, uncompiled."""
