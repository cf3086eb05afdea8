"""One film over many machines: chunk runs of Prefect deployments (``fan_out``, the chunk
flows), and the temporary Prefect server of a ``lipdub dub`` run without a farm."""
