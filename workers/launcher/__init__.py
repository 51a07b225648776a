"""What starts and keeps sluice's processes: the supervisor of ``sluice up``, the embedded Redis, Flower, the
keeper that restarts a child that died, and the private sluice that tests and benchmarks start (local.py).
It sits below ``cli`` and ``bench``, which both start processes through it."""
