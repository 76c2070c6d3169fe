"""visrep: transferable visual representations for classification and generation."""
__version__ = "0.1.0"


def _configure_threads_before_torch() -> None:
    """The thread policy must be in place before torch loads (visrep.hardware.threads)."""
    from visrep.errors import UserError
    from visrep.hardware.threads import configure_process

    try:
        configure_process()
    except UserError:
        pass  # a bad VISREP_THREADS / OMP_NUM_THREADS: the CLI reports it as one error line


_configure_threads_before_torch()
