"""Analytics that run on the edge box: physics models, power-quality detection, model inference.

Everything here is computation on values already in hand (arrays, samples, parameters): no I/O,
so it can be tested against worked examples and benchmarked on its own.
"""
