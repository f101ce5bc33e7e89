"""What fits and why: tiers, the memory model, precision, speed plans and the recommendation."""
