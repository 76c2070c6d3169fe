"""What this machine can do, and the precision and thread count chosen from it.

Imported by ``visrep/__init__`` before torch, so that the thread policy is in place before
torch's first parallel region (see :mod:`visrep.hardware.threads`).
"""
