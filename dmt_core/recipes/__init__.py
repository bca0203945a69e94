"""Recipes that make the shipped files: not on the import path of the model.

- :mod:`.pretrain_backbone`: ``dmt pretrain-backbone``, the tiny preset's encoder.
- :mod:`.export`: ``dmt export-pretrained``, a training run shipped as a registered model.
- :mod:`.figures`: the README's figures of the synthetic benchmark and the shipped model.
"""
