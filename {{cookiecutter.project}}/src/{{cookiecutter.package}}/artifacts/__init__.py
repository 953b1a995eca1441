"""The foundation every other layer may import: the naming contract, the artifact store,
released models, a version's code record and the traffic assignment.

Nothing here imports kfp, invoke or the release machinery.
"""
