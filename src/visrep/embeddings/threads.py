"""One thread for NumPy / SciPy / scikit-learn numerics while torch is loaded in the same process.

torch, NumPy's OpenBLAS and scikit-learn's OpenMP runtime each keep a pool of worker threads that
spin for a while after every call. Alternating between them on a small machine makes each pool
wait for the others' spinning threads: on this 2-core machine a 1259×128 SVD took 1.5 s instead of
0.015 s, and the whole analysis of one digits layer 8.8 s instead of 1.2 s, with every pool limited
to one thread. The arrays analysed here are small enough that one thread is the fast choice.
"""

from __future__ import annotations


def single_threaded_numerics():
    """Context manager: every BLAS and OpenMP pool in the process limited to one thread, restored on exit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
