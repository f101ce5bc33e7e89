"""Everything but the front ends. Never imports Qt; heavy libraries are imported lazily inside functions."""
