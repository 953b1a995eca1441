"""Release orchestration: context, preflight and plan, image, code, workflows, versions.

Nothing here imports kfp, google-cloud-storage or scikit-learn at module level, so that
`inv --list` stays as fast as bare invoke.
"""
