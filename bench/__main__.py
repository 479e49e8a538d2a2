"""Run the benchmark: ``python -m bench [--quick] [--kubeconfig FILE]``; or ``--compare reloader``, ``--profile``."""

import sys

if "--profile" in sys.argv:
    from bench.profile import main as profile

    profile(sys.argv[1:])
elif "--compare" in sys.argv:
    from bench.compare import main as compare

    compare(sys.argv[1:])
else:
    from bench.run import main

    main()
