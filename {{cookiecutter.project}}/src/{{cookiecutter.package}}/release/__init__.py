"""The release machinery: names, store, image, workflows and the release plan.

Nothing here imports kfp, google-cloud-storage or scikit-learn at module level, so that
`inv --list` stays as fast as bare invoke.
"""
