"""Random-forest hyper-parameter search, in parts: the search space (:mod:`.space`), the
surrogate and expected improvement (:mod:`.surrogate`), the resumable trial log
(:mod:`.trials`), the loop (:mod:`.search`), the figures (:mod:`.report`) and a small MNIST
objective (:mod:`.mnist_objective`). ``fastext.tools.hpsearch`` is the public entry point.
"""
