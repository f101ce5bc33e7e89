"""Datasets: layouts, validation report, demo generator, augmentation, normalisation, DataModule.

Nothing heavy is imported here so ``from medseg_gui.core.data import formats`` stays cheap for the GUI;
torch, lightning and albumentations are imported inside the functions that need them.
"""
