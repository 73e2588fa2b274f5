"""Pure numpy logic: no Qt, no TensorFlow (a test enforces this)."""
