"""Online inference: one app per released version, at /v{version}/predict.

Native thread pools (OpenMP, OpenBLAS, MKL) are sized when their library loads, which for
the model's libraries happens while the model is unpickled. Their size is therefore set
here, before anything numerical is imported, from SERVING_THREADS (default 1: a request is a
few trips, and idle pool threads spin on the cores the router and the other versions'
servers need; scale out with replicas). `app.limit_native_threads` applies it again once
the model is loaded, to whatever loaded since.
"""

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SERVING_THREADS = os.environ.get("SERVING_THREADS", "1")
for _variable in THREAD_VARIABLES:
    os.environ[_variable] = SERVING_THREADS
