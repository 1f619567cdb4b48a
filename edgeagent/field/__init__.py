"""Field adapters: one module per device kind; they only do I/O into the process image."""
