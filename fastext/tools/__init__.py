"""Course insights as tools: random-forest hyper-parameter search (:mod:`.hpsearch`), loss
landscapes (:mod:`.landscape`) and the universal approximation theorem (:mod:`.uat`).

Each is a Python API and a ``fastext`` subcommand (``fastext hpsearch|landscape|uat``).
Layer: tools build on ``fastext.learner`` and ``fastext.data``; the learner never imports them.
"""
