"""Everything that touches Keras/TensorFlow. Modules import them lazily, inside functions,
so importing this package costs nothing until the inference thread starts."""
