"""Storage drivers behind one small async interface. They know nothing about registries."""
