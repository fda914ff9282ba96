"""The environment variables that size the native thread pools of numpy's BLAS and of
OpenMP (scikit-learn's histogram gradient boosting): read once, when the library loads,
so they must be set before anything imports numpy."""

THREAD_POOL_ENVS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
