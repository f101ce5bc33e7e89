"""Qt front end: thin widgets over ``medseg_gui.core`` (which never imports Qt).

Nothing in this package imports torch, lightning, transformers or albumentations at module level,
so the window paints before those load (checked by ``tests/test_gui_imports.py``).
"""
